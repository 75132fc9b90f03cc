// fiber/thread_errno.hpp: errno as the thread a fiber runs on now sees it.
//
// glibc declares __errno_location() const, so within one function the
// compiler may compute errno's address once and keep it in a register across
// any call. A fiber that parks between two system calls of one function may
// resume on another worker thread, and would then read the first thread's
// errno, not the one its last call set. Seen in the TSan build's
// TcpStream::read: a recv that failed with ECONNRESET read back as the EAGAIN
// of an earlier recv on the other thread, and the fiber parked for good.
//
// thread_errno() is a call the compiler may neither inline nor merge with
// another (the empty asm is a side effect), so each call asks the thread it
// runs on. Code that may have parked earlier in the same function reads
// errno through it.
#pragma once

#include <cerrno>

namespace chronos::detail {

[[gnu::noinline]] inline int thread_errno() noexcept {
  asm volatile("" ::: "memory");
  return errno;
}

}  // namespace chronos::detail
