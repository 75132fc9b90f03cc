/* sched/gdb_autoload.S: asks gdb to load tools/gdb/chronos.py.

   gdb reads the .debug_gdb_scripts section of every object file it loads;
   an entry of kind 1 names a Python file, which gdb looks for in the current
   directory and then along its source search path (`directory`), subject to
   `set auto-load safe-path`. tools/gdb/chronos.py says how to set both up.

   The section is not allocated: it costs the program nothing at run time.
   "MS" with entry size 1 lets the linker merge duplicate entries.

   From a static library the linker takes an object only if something refers
   to a symbol it defines: chronos_gdb_autoload below is that symbol, and
   sched/registry.cpp (linked into every program that starts a runtime) must
   refer to it. Hidden, so a shared library does not export it. */

	.pushsection .debug_gdb_scripts, "MS", @progbits, 1
	.byte	1		/* SECTION_SCRIPT_ID_PYTHON_FILE */
	.asciz	"chronos.py"
	.popsection

	.pushsection .rodata.chronos_gdb_autoload, "a", @progbits
	.globl	chronos_gdb_autoload
	.hidden	chronos_gdb_autoload
	.type	chronos_gdb_autoload, @object
	.size	chronos_gdb_autoload, 1
chronos_gdb_autoload:
	.byte	1
	.popsection

	.section .note.GNU-stack, "", @progbits
