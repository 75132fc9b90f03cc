/*
 * arch/switch_x86_64_sysv_elf.S: the hand-written context switch for
 * x86-64, System V psABI, ELF, GNU as. The interface is arch/context.hpp.
 *
 * A suspended context is its stack pointer; at that address lies the frame
 * below (arch/context_x86_64.hpp, struct SavedFrame, is the C++ mirror):
 *
 *     offset  0x00    0x04    0x08  0x10  0x18  0x20  0x28  0x30  0x38
 *           +-------+-------+-----+-----+-----+-----+-----+-----+-----+
 *           | MXCSR | x87CW | r12 | r13 | r14 | r15 | rbx | rbp | rip |
 *           +-------+-------+-----+-----+-----+-----+-----+-----+-----+
 *
 * rip is the resume address: for a context suspended in chronos_context_jump
 * it is the return address its call pushed; for a fresh context it is the
 * entry trampoline. Only the callee-saved state is saved: the caller of jump
 * has already spilled whatever it needs from the caller-saved registers.
 *
 * The switch ends with "jmp *%r8" rather than "ret": the return-stack
 * predictor would predict a return into the *caller* of this jump, which is
 * always wrong for a switch, and a mispredicted ret costs more than an
 * indirect jump the BTB learns.
 *
 * Under CET every entry point begins with endbr64, since each is reached by
 * an indirect call or jump. Shadow stacks are not supported (a switch would
 * have to switch shadow stacks too), so the object carries no
 * GNU_PROPERTY_X86_FEATURE_1_SHSTK note.
 */

#if defined(__CET__) && (__CET__ & 1)
#define CHRONOS_ENDBR endbr64
#else
#define CHRONOS_ENDBR
#endif

        .text

/*
 * Transfer chronos_context_jump(Context to = %rdi, void* data = %rsi)
 *   returns {from = %rax, data = %rdx} to the side that is resumed.
 */
        .globl  chronos_context_jump
        .type   chronos_context_jump, @function
        .p2align 4
chronos_context_jump:
        .cfi_startproc
        CHRONOS_ENDBR
        leaq    -0x38(%rsp), %rsp       /* room for the frame below the return address */
        .cfi_adjust_cfa_offset 0x38
        stmxcsr 0x00(%rsp)              /* save the SSE control/status word */
        fnstcw  0x04(%rsp)              /* save the x87 control word */
        movq    %r12, 0x08(%rsp)        /* save the callee-saved registers */
        movq    %r13, 0x10(%rsp)
        movq    %r14, 0x18(%rsp)
        movq    %r15, 0x20(%rsp)
        movq    %rbx, 0x28(%rsp)
        movq    %rbp, 0x30(%rsp)

        movq    %rsp, %rax              /* rax = our context, handed to the other side */
        movq    %rdi, %rsp              /* switch stacks: from here on we are `to` */
        .cfi_def_cfa rsp, 0x40          /* (CFA now describes `to`'s frame) */

        movq    0x38(%rsp), %r8         /* r8 = where `to` resumes */
        ldmxcsr 0x00(%rsp)              /* restore `to`'s floating-point control state */
        fldcw   0x04(%rsp)
        movq    0x08(%rsp), %r12        /* restore `to`'s callee-saved registers */
        movq    0x10(%rsp), %r13
        movq    0x18(%rsp), %r14
        movq    0x20(%rsp), %r15
        movq    0x28(%rsp), %rbx
        movq    0x30(%rsp), %rbp
        leaq    0x40(%rsp), %rsp        /* pop the frame and the resume address */
        .cfi_def_cfa rsp, 0

        movq    %rsi, %rdx              /* Transfer.data, second return register */
        movq    %rax, %rdi              /* a fresh context's entry takes the Transfer */
                                        /* as its argument: rdi = from, rsi = data */
        jmp     *%r8                    /* resume `to` */
        .cfi_endproc
        .size   chronos_context_jump, .-chronos_context_jump

/*
 * Context chronos_context_make(void* top = %rdi, size_t size = %rsi, EntryFn fn = %rdx)
 *
 * Builds a frame below `top` so that the first jump to it enters
 * chronos_context_trampoline with rbx = fn and a 16-byte aligned stack.
 * `size` is not needed here: the stack is only ever touched from the top.
 */
        .globl  chronos_context_make
        .type   chronos_context_make, @function
        .p2align 4
chronos_context_make:
        .cfi_startproc
        CHRONOS_ENDBR
        movq    %rdi, %rax
        andq    $-16, %rax              /* align the top down to 16 bytes */
        leaq    -0x50(%rax), %rax       /* frame (0x40) + 16 bytes of padding, so that */
                                        /* rsp is 16-aligned after the frame is popped */
        movl    $0x1F80, 0x00(%rax)     /* psABI default MXCSR */
        movw    $0x037F, 0x04(%rax)     /* psABI default x87 control word */
        movw    $0, 0x06(%rax)
        movq    $0, 0x08(%rax)          /* r12..r15 start zeroed */
        movq    $0, 0x10(%rax)
        movq    $0, 0x18(%rax)
        movq    $0, 0x20(%rax)
        movq    %rdx, 0x28(%rax)        /* rbx = the entry function */
        movq    $0, 0x30(%rax)          /* rbp = 0 ends frame-pointer walks */
        leaq    chronos_context_trampoline(%rip), %rcx
        movq    %rcx, 0x38(%rax)        /* first resume lands in the trampoline */
        movq    $0, 0x40(%rax)          /* a null "return address" above it */
        movq    $0, 0x48(%rax)
        ret
        .cfi_endproc
        .size   chronos_context_make, .-chronos_context_make

/*
 * The first instruction a fresh context runs. rdi:rsi hold the Transfer from
 * the jump that started it; rbx holds the entry function. The entry must not
 * return; if it does, we trap rather than run off the top of the stack.
 *
 * .cfi_undefined rip marks this as the outermost frame, so gdb's `bt` and the
 * libgcc unwinder stop here cleanly instead of walking into garbage.
 */
        .type   chronos_context_trampoline, @function
        .p2align 4
chronos_context_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        CHRONOS_ENDBR
        call    *%rbx                   /* entry(Transfer); rsp is 16-aligned here */
        ud2                             /* unreachable: entry functions never return */
        .cfi_endproc
        .size   chronos_context_trampoline, .-chronos_context_trampoline

/*
 * The first instruction a fresh context made for the inline switch
 * (arch/switch_inline_x86_64.hpp, make_inline) runs. The inline switch hands
 * over its Transfer in rax (context) and rdx (data); the entry function lies
 * at (%rsp), and rsp is 16-byte aligned. Like the trampoline above, it is the
 * outermost frame for every unwinder.
 */
        .globl  chronos_context_trampoline_inline
        .type   chronos_context_trampoline_inline, @function
        .p2align 4
chronos_context_trampoline_inline:
        .cfi_startproc
        .cfi_undefined rip
        CHRONOS_ENDBR
        movq    (%rsp), %rcx            /* the entry function */
        movq    %rax, %rdi              /* Transfer.ctx */
        movq    %rdx, %rsi              /* Transfer.data */
        call    *%rcx                   /* entry(Transfer) */
        ud2                             /* unreachable */
        .cfi_endproc
        .size   chronos_context_trampoline_inline, .-chronos_context_trampoline_inline

        .section .note.GNU-stack,"",%progbits
