// fiber/populate.hpp: committing fresh pages in one system call instead of
// one page fault each, and mapping memory for huge pages.
//
// A fresh stack slot or TCB chunk is mapped lazily, and its first touch costs
// a page fault per page. On a virtual machine that fault is the expensive way
// in: the guest's exception path and the hypervisor's both run. Measured on
// the development VM (2-CPU AMD EPYC guest, Linux 6.18), per 4 KiB page:
//
//   first touch, page fault                       10.4-11.6 us
//   madvise(MADV_POPULATE_WRITE), one page each    2.1-2.5 us (+ 4.5-5.4 us first touch)
//   process_madvise of 64 pages, one call          1.0-1.4 us (+ 4.5-5.4 us first touch)
//
// (bench/results/idle-populate-2cpu-2026-12-05.md; bench/first_touch_bench
// measures each step again.) What is left at first
// touch is the hypervisor mapping the page for the guest, which no
// guest-side call avoids for a small page (a huge page faulted in by a touch
// costs as much, 6.8 us per 4 KiB; populated whole it costs 0.14 us and its
// first touch 0.03 us per 4 KiB, which packed slabs use: stack_pool.hpp). So a
// batch of fresh slots costs about half as much populated as faulted, and a
// million parked fibers started in 0.54-0.78x the time. On bare metal a fault
// costs well under a microsecond; the batched call should cost about the
// same there, but that has not been measured.
//
// populate_pages() commits each range with process_madvise(PIDFD_SELF, ...,
// MADV_POPULATE_WRITE) (Linux 6.15+ for the self pidfd, 5.14+ for the
// advice), and falls back to one madvise() per range, then to nothing (the
// pages fault in as before), remembering which works. It never fails: a
// range the kernel cannot commit now (no memory) faults in on first touch,
// with the usual consequences. Under valgrind it does nothing: valgrind does
// not know process_madvise, and its own page tracking makes the gain moot.
// Not on any steady-state path: only fresh slots and chunks come here.
#pragma once

#include <cstddef>

namespace chronos::detail {

struct PageRange {
  void* lo;         // page-aligned
  std::size_t len;  // a multiple of the page size
};

// At most kMaxPopulate ranges per call.
void populate_pages(const PageRange* ranges, std::size_t n) noexcept;

// Fresh read-write anonymous memory for huge pages: len bytes (plus `flags`,
// MAP_NORESERVE say), placed so that [p + lead, p + len) starts on a
// kHugePage boundary, and advised MADV_HUGEPAGE there. The advice is only
// that: where the kernel has no transparent huge pages, or none free, it
// maps small ones. Populated whole a huge page costs a fraction of its 512
// small pages on a VM (stack_pool.hpp, "Huge pages"). MAP_FAILED (errno
// set) if the mapping fails.
void* map_for_huge_pages(std::size_t len, std::size_t lead, int flags) noexcept;
inline constexpr std::size_t kHugePage = 2u << 20;  // x86-64's, and 4 KiB-page aarch64's

// False where populate_pages is known to do nothing: under valgrind, or once
// the kernel has refused both calls.
bool populate_enabled() noexcept;
inline constexpr std::size_t kMaxPopulate = 64;

}  // namespace chronos::detail
