# tools/gdb/chronos.py: gdb commands for looking at chronos fibers.
#
# Loading. Either by hand, from the repository root (or with a full path):
#
#     (gdb) source tools/gdb/chronos.py
#
# or automatically: the library carries a .debug_gdb_scripts entry naming
# "chronos.py" (sched/gdb_autoload.S), which gdb looks for in the current
# directory and then along the source search path. So, for example:
#
#     gdb -iex 'add-auto-load-safe-path /path/to/chronos/tools/gdb' \
#         -iex 'directory /path/to/chronos/tools/gdb' ./your_program
#
# (or put those two lines, without -iex, in ~/.gdbinit). `info auto-load
# python-scripts` says whether it was found. Loading it twice is harmless.
#
# Commands.
#
#     info chronos-fibers        every live fiber of every live runtime: id,
#                                state, priority, small-stack flag, what it
#                                waits on, name and TCB address
#     chronos-fiber bt ID [ARGS] the backtrace of a switched-out fiber (Waiting,
#                                or Ready after having run), by id or by TCB
#                                address (0x...); ARGS go to `bt` (full, -N...)
#
# How. Everything is read from memory; nothing in the inferior is called, so
# both work on a process stopped anywhere (and the listing on a core file).
# The runtimes hang off chronos_debug_runtimes (sched/registry.hpp); each
# one's TCBs lie side by side in the chunks of its FiberPool
# (fiber/fiber_pool.hpp, FiberPool::for_each_fiber). A backtrace points the selected thread's frame 0
# at the fiber's saved context (whose layout chronos_debug_switch names), lets
# gdb's own unwinder walk it, and puts every register back, whatever happens.
# Field offsets come from the debug info, by name: the library must be built
# with -g (RelWithDebInfo or Debug).

import struct

import gdb

_STATES = ("Ready", "Running", "Waiting", "Done")
_STATE_MASK = 0x3  # bit 2 is a transient inspection hold: ignored
_PRIO_SHIFT = 48
_SMALL_BIT = 1 << 52
_CHUNK_FIBERS = 1024  # FiberPool::kChunkFibers
_MAX_RUNTIMES = 4096  # bounds on walks through possibly corrupt memory
_MAX_CHUNKS = 1 << 20

# The registers a saved context gives back, and where, per layout. The stack
# pointer is computed: "sp" is its offset from the context.
#   inline  arch/switch_inline_x86_64.hpp: [rbp][resume address], then the
#           128-byte red zone the switch stepped over. The compiler's CFI at
#           the resume label describes the stack pointer from before the asm
#           statement, i.e. ctx + 16 + 128.
#   asm     arch/context_x86_64.hpp, SavedFrame; the resume address is the
#           return address of chronos_context_jump's call, and the stack
#           pointer after that return is ctx + 0x40.
#   fcontext Boost's jump_fcontext leaves the same frame on x86-64.
_FRAME_ASM = {
    "regs": {
        "r12": 0x08, "r13": 0x10, "r14": 0x18, "r15": 0x20, "rbx": 0x28, "rbp": 0x30, "rip": 0x38,
    },
    "sp": 0x40,
}
_LAYOUTS = {
    "inline": {"regs": {"rbp": 0x00, "rip": 0x08}, "sp": 16 + 128},
    "asm": _FRAME_ASM,
    "fcontext": _FRAME_ASM,
}
# What a backtrace changes, and so saves and restores. Also orig_rax, where
# gdb has it (x86-64 Linux): for a thread stopped inside a system call it is
# what the kernel restarts when the thread goes on. `set $rip` leaves it alone
# today, but some of gdb's pc writes reset it, so it is put back too.
_SAVED_REGS = ("rip", "rsp", "rbp", "rbx", "r12", "r13", "r14", "r15")


class ChronosError(Exception):
    """A condition to report to the user in one line, not a Python traceback."""


def _u64(data, off):
    return struct.unpack_from("<Q", data, off)[0]


def _inferior():
    inf = gdb.selected_inferior()
    if inf is None or (inf.pid == 0 and not inf.threads()):
        raise ChronosError("no process: run the program, attach to one, or load a core file")
    return inf


def _read(inf, addr, n):
    try:
        return bytes(inf.read_memory(addr, n))
    except gdb.MemoryError as e:
        raise ChronosError("cannot read %d bytes at %#x: %s" % (n, addr, e))


def _field_offsets(t, names):
    """Byte offsets of the named fields of struct type t (from the debug info)."""
    t = t.strip_typedefs()
    found = {}
    for f in t.fields():
        if f.name in names and not f.is_base_class and hasattr(f, "bitpos"):
            found[f.name] = f.bitpos // 8
    missing = [n for n in names if n not in found]
    if missing:
        raise ChronosError(
            "%s has no field(s) %s: does this script match the library?" % (t, ", ".join(missing))
        )
    return found


def _vector_bounds(v):
    """[begin, end) of a std::vector (libstdc++ or libc++), as gdb.Values."""
    try:
        impl = v["_M_impl"]
        return impl["_M_start"], impl["_M_finish"]
    except gdb.error:
        return v["__begin_"], v["__end_"]


class _Layout:
    """Where the fields this script reads lie in a Fiber, from the debug info."""

    def __init__(self):
        try:
            self.fiber_type = gdb.lookup_type("chronos::detail::Fiber")
        except gdb.error:
            raise ChronosError(
                "no debug info for chronos::detail::Fiber: "
                "build chronos with -g (RelWithDebInfo or Debug)"
            )
        self.size = self.fiber_type.sizeof
        self.off = _field_offsets(
            self.fiber_type, ("state", "ctx", "stack_lo", "ops", "id", "name", "wait_kind")
        )
        self.name_len = self.fiber_type.strip_typedefs()["name"].type.sizeof
        self.wait_names = {}
        wk = self.fiber_type.strip_typedefs()["wait_kind"].type.strip_typedefs()
        self.wait_size = wk.sizeof if wk.sizeof in (1, 2, 4, 8) else 1
        if wk.code == gdb.TYPE_CODE_ENUM:
            for f in wk.fields():
                name = f.name.split("::")[-1]
                if name.startswith("k") and len(name) > 1 and name[1].isupper():
                    name = name[1:]
                self.wait_names[f.enumval] = name


class FiberInfo:
    def __init__(self, rt, tcb, data, lay):
        o = lay.off
        word = _u64(data, o["state"])
        self.rt = rt
        self.tcb = tcb
        self.state = _STATES[word & _STATE_MASK]
        self.prio = (word >> _PRIO_SHIFT) & 0xF
        self.small = bool(word & _SMALL_BIT)
        self.ctx = _u64(data, o["ctx"])
        self.id = _u64(data, o["id"])
        raw = data[o["name"] : o["name"] + lay.name_len].split(b"\0", 1)[0]
        self.name = raw.decode("utf-8", "replace")
        wk = int.from_bytes(data[o["wait_kind"] : o["wait_kind"] + lay.wait_size], "little")
        self.wait = "-" if wk == 0 else lay.wait_names.get(wk, str(wk))
        if self.state != "Waiting" and wk != 0:
            self.wait = "-"  # a stale kind from the last park


def _runtimes():
    try:
        head = gdb.parse_and_eval("chronos_debug_runtimes")
    except gdb.error as e:
        msg = str(e)
        if "unknown type" in msg:
            raise ChronosError("chronos_debug_runtimes has no debug info: build chronos with -g")
        raise ChronosError(
            "no chronos in this program: it has no chronos_debug_runtimes (%s)" % msg.rstrip(".")
        )
    out = []
    seen = set()
    rt = head
    while int(rt) != 0:
        addr = int(rt)
        if addr in seen or len(out) >= _MAX_RUNTIMES:
            raise ChronosError("the runtime list at %#x loops or is corrupt" % int(head))
        seen.add(addr)
        out.append(rt)
        try:
            rt = rt.dereference()["next_runtime_"]
        except gdb.MemoryError as e:
            raise ChronosError("cannot read runtime %#x: %s" % (addr, e))
    return out


def _pool_tcbs(inf, rt, pool, lay):
    """The address of every TCB a FiberPool has carved, free or not."""
    begin, end = _vector_bounds(pool["chunks_"])
    n = (int(end) - int(begin)) // 8
    if n < 0 or n > _MAX_CHUNKS:
        raise ChronosError("runtime %#x: the TCB pool's chunk list looks corrupt" % int(rt))
    data = _read(inf, int(begin), n * 8) if n else b""
    tcbs = []
    for i in range(n):  # a listed chunk is constructed whole
        base = _u64(data, 8 * i)
        tcbs.extend(base + k * lay.size for k in range(_CHUNK_FIBERS))
    return tcbs


def all_fibers():
    """(runtimes, fibers): every live fiber of every live runtime."""
    inf = _inferior()
    rts = _runtimes()
    if not rts:
        return rts, []
    lay = _Layout()
    o = lay.off
    fibers = []
    for rt in rts:
        pool = rt.dereference()["fibers_"]
        for tcb in _pool_tcbs(inf, rt, pool, lay):
            try:
                data = bytes(inf.read_memory(tcb, lay.size))
            except gdb.MemoryError:
                continue  # memory that is gone: nothing lives there
            if _u64(data, o["ops"]) == 0:
                continue  # a free TCB
            fibers.append(FiberInfo(int(rt), tcb, data, lay))
    fibers.sort(key=lambda f: (f.rt, f.id))
    return rts, fibers


def _worker_count(rt):
    try:
        b, e = _vector_bounds(rt.dereference()["workers_"])
        return (int(e) - int(b)) // 8
    except gdb.error:
        return None


_ROW = "  %8s  %-7s  %4s  %5s  %-8s  %-18s  %s\n"


class InfoChronosFibers(gdb.Command):
    """List every live chronos fiber of every live runtime.

Usage: info chronos-fibers

Columns: Id (per runtime), State (Ready/Running/Waiting/Done), Prio (0-15),
Small (small stack), Wait (what a Waiting fiber waits on: Join, Sync, Io...),
TCB (its chronos::detail::Fiber: `print *(chronos::detail::Fiber*)ADDR`) and
Name. Reads memory only: works on a stopped process or a core file."""

    def __init__(self):
        super().__init__("info chronos-fibers", gdb.COMMAND_STATUS, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        if arg.strip():
            raise gdb.GdbError("info chronos-fibers takes no argument")
        try:
            rts, fibers = all_fibers()
        except (ChronosError, gdb.error) as e:
            raise gdb.GdbError("info chronos-fibers: %s" % e)
        if not rts:
            gdb.write("No live chronos runtime in this process.\n")
            return
        for rt in rts:
            mine = [f for f in fibers if f.rt == int(rt)]
            nw = _worker_count(rt)
            workers = "? workers" if nw is None else "%d worker%s" % (nw, "" if nw == 1 else "s")
            gdb.write(
                "Runtime %#x: %s, %d live fiber%s\n"
                % (int(rt), workers, len(mine), "" if len(mine) == 1 else "s")
            )
            if not mine:
                continue
            gdb.write(_ROW % ("Id", "State", "Prio", "Small", "Wait", "TCB", "Name"))
            for f in mine:
                small = "yes" if f.small else "no"
                gdb.write(
                    _ROW % (f.id, f.state, f.prio, small, f.wait, "%#x" % f.tcb, f.name or "-")
                )


class ChronosFiber(gdb.Command):
    """Commands on one chronos fiber.

Usage: chronos-fiber bt ID|TCB-ADDRESS [BT-ARGUMENTS]
See `help chronos-fiber bt` and `info chronos-fibers`."""

    def __init__(self):
        super().__init__("chronos-fiber", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


def _switch_kind(inf):
    try:
        addr = int(gdb.parse_and_eval("(unsigned long)&chronos_debug_switch"))
    except gdb.error as e:
        raise ChronosError("cannot find chronos_debug_switch: %s" % e)
    raw = _read(inf, addr, 16).split(b"\0", 1)[0].decode("ascii", "replace")
    if raw not in _LAYOUTS:
        raise ChronosError(
            "unknown context layout %r (chronos_debug_switch): "
            "this script is older than the library" % raw
        )
    return raw


def _check_live(inf):
    conn = getattr(inf, "connection", None)
    kind = getattr(conn, "type", None) if conn is not None else None
    if kind is None:  # gdb before 12: no Inferior.connection
        kind = "core" if "core dump" in gdb.execute("info target", to_string=True) else "?"
    if kind == "core":
        raise ChronosError(
            "a fiber's backtrace needs a live process (it points a thread's registers at the fiber "
            "for a moment, and a core file's registers cannot be written)"
        )
    if inf.pid == 0:
        raise ChronosError("the program is not running")
    th = gdb.selected_thread()
    if th is None:
        raise ChronosError("no thread selected")
    if th.is_running():
        raise ChronosError("the selected thread is running: interrupt it first")
    if th.is_exited():
        raise ChronosError("the selected thread has exited: select another one")
    return th


def _not_started(pc):
    """True if pc is where a fresh context first resumes (the trampoline)."""
    try:
        sym = gdb.execute("info symbol %#x" % pc, to_string=True)
    except gdb.error:
        return False
    where = sym.split(" in section ", 1)[0].strip()
    return where in ("chronos_context_trampoline", "chronos_context_trampoline_inline") or (
        where.startswith("make_fcontext")  # Boost: the trampoline inside make_fcontext
    )


def _reg(frame, name):
    v = frame.read_register(name)
    return int(v.cast(gdb.lookup_type("unsigned long"))) & 0xFFFFFFFFFFFFFFFF


def _set_reg(name, value):
    gdb.execute("set $%s = %#x" % (name, value & 0xFFFFFFFFFFFFFFFF), to_string=True)


class ChronosFiberBt(gdb.Command):
    """Backtrace of a switched-out chronos fiber.

Usage: chronos-fiber bt ID|TCB-ADDRESS [BT-ARGUMENTS]

ID is a fiber id from `info chronos-fibers` (with several runtimes, ids
repeat: give the TCB address, 0x..., instead). BT-ARGUMENTS (full, -N, ...)
are passed to `bt`. The fiber must be Waiting, or Ready and switched out;
a Running fiber is on some thread's stack: find that thread instead.

For a moment the selected thread's frame-0 registers are set to the fiber's
saved ones and gdb's own unwinder walks the fiber's stack; every register is
put back afterwards, so the process can go on. Needs a live process.
A switched-out context keeps only what the switch saved (the stack, frame
and instruction pointers, and with the asm and Boost switches rbx, r12-r15):
the frames are right, but a value that the innermost switch frames keep in
another register shows whatever the borrowed thread has there."""

    def __init__(self):
        super().__init__("chronos-fiber bt", gdb.COMMAND_STACK, gdb.COMPLETE_NONE)

    def invoke(self, arg, from_tty):
        try:
            out = self._run(arg)
        except (ChronosError, gdb.error) as e:
            raise gdb.GdbError("chronos-fiber bt: %s" % e)
        gdb.write(out)

    @staticmethod
    def _parse(arg):
        argv = gdb.string_to_argv(arg)
        if not argv:
            raise ChronosError(
                "which fiber? usage: chronos-fiber bt ID|TCB-ADDRESS [BT-ARGUMENTS]"
            )
        key = argv[0]
        try:
            if key.lower().startswith("0x"):
                return ("tcb", int(key, 16)), argv[1:]
            n = int(key, 10)
            if n < 0:
                raise ValueError
            return ("id", n), argv[1:]
        except ValueError:
            raise ChronosError(
                "%r is not a fiber id (a decimal number) nor a TCB address (0x...)" % key
            )

    def _run(self, arg):
        (how, key), bt_args = self._parse(arg)
        inf = _inferior()
        rts, fibers = all_fibers()
        if not rts:
            raise ChronosError("no live chronos runtime in this process")
        if how == "tcb":
            hits = [f for f in fibers if f.tcb == key]
            what = "at TCB %#x" % key
        else:
            hits = [f for f in fibers if f.id == key]
            what = "with id %d" % key
        if not hits:
            raise ChronosError("no live fiber %s (see `info chronos-fibers`)" % what)
        if len(hits) > 1:
            raise ChronosError(
                "%d fibers %s, in different runtimes: give the TCB address instead (%s)"
                % (len(hits), what, ", ".join("%#x" % f.tcb for f in hits))
            )
        f = hits[0]
        label = "fiber %d%s" % (f.id, ' "%s"' % f.name if f.name else "")
        if f.state == "Running":
            raise ChronosError(
                "%s is Running: its frames are on the stack of the worker thread running it "
                "(`info threads`, `thread N`, `bt`)" % label
            )
        if f.state == "Done":
            raise ChronosError("%s is Done: its body has returned and its stack is dead" % label)
        if f.ctx == 0 and f.state == "Ready":
            return (
                "%s (Ready, TCB %#x) has not started yet: no stack is bound to it until it "
                "first runs, so it has no frames\n" % (label, f.tcb)
            )
        if f.ctx == 0:
            raise ChronosError("%s has no saved context (it is being switched right now?)" % label)
        th = _check_live(inf)
        layout = _LAYOUTS[_switch_kind(inf)]
        ctx = f.ctx
        saved = _read(inf, ctx, max(layout["regs"].values()) + 8)
        regs = {name: _u64(saved, off) for name, off in layout["regs"].items()}
        regs["rsp"] = ctx + layout["sp"]
        return self._bt_with(th, regs, label, f, bt_args)

    @staticmethod
    def _bt_with(th, regs, label, f, bt_args):
        try:
            prev_level = gdb.selected_frame().level()
        except gdb.error:
            prev_level = 0
        frame0 = gdb.newest_frame()
        frame0.select()
        names = list(_SAVED_REGS)
        try:
            frame0.read_register("orig_rax")
            names.append("orig_rax")
        except (gdb.error, ValueError):
            pass
        old = {n: _reg(frame0, n) for n in names}
        header = "%s (%s, TCB %#x), borrowing thread %d's registers:\n" % (
            label, f.state, f.tcb, th.num,
        )
        if _not_started(regs["rip"]):
            header += "(it has not started yet: only its entry trampoline is on its stack)\n"
        failures = []
        try:
            # The stack pointer and the frame pointer first, the pc last: gdb
            # unwinds from the complete set.
            for n in ("rsp", "rbp", "rbx", "r12", "r13", "r14", "r15", "rip"):
                if n in regs:
                    _set_reg(n, regs[n])
            cmd = "bt" + ("" if not bt_args else " " + " ".join(bt_args))
            try:
                out = gdb.execute(cmd, to_string=True)
            except gdb.error as e:
                out = "(bt failed: %s)\n" % e
        finally:
            # The pc first, orig_rax last: writing the pc may reset orig_rax.
            for n in ["rip"] + [n for n in names if n != "rip"]:
                try:
                    _set_reg(n, old[n])
                except gdb.error as e:
                    failures.append("%s (%s)" % (n, e))
            try:  # reselect the frame the user had selected (quietly, unlike `frame N`)
                fr = gdb.newest_frame()
                for _ in range(prev_level):
                    fr = fr.older() or fr
                fr.select()
            except gdb.error:
                pass
        if failures:
            raise ChronosError(
                "could not restore register(s) %s of thread %d: do not continue the process"
                % (", ".join(failures), th.num)
            )
        return header + out


InfoChronosFibers()
ChronosFiber()
ChronosFiberBt()
