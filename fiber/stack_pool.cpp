// fiber/stack_pool.cpp: mapping, carving, pooling and unmapping fiber slots.
// The layout and the policy are described in stack_pool.hpp.
#include "fiber/stack_pool.hpp"

#include "arch/sanitizer.hpp"
#include "fiber/populate.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <new>
#include <string>
#include <system_error>

namespace chronos::detail {
namespace {

constexpr std::size_t kSlabBytes = 4u << 20;  // small slots are carved from ~4 MiB slabs
static_assert(kSlabBytes % kHugePage == 0, "a packed slab's slots fill whole huge pages");

std::size_t round_up(std::size_t n, std::size_t to) {
  return (n + to - 1) / to * to;
}

long read_long(const char* path) {
  std::ifstream in(path);
  long v = -1;
  in >> v;
  return v;
}

long count_maps() {
  std::ifstream in("/proc/self/maps");
  long n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

void throw_stack_alloc_error(int err, std::size_t bytes) {
  std::string msg = "chronos: cannot map a fiber stack of " + std::to_string(bytes) + " bytes: ";
  long max_maps = read_long("/proc/sys/vm/max_map_count");
  long maps = count_maps();
  if (err == ENOMEM && max_maps > 0 && maps + 4 >= max_maps) {
    msg += "vm.max_map_count (" + std::to_string(max_maps) + ") reached, " + std::to_string(maps) +
           " mappings in use; use small stacks (SpawnOptions::small_stack) or raise the limit";
  } else if (err == ENOMEM) {
    msg += "out of memory (or RLIMIT_AS reached)";
  } else {
    msg += std::system_category().message(err);
  }
  throw std::system_error(err, std::generic_category(), msg);
}

StackPool::StackPool(std::size_t stack_size, bool small)
    : small_(small),
      page_(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))),
      packed_(small && stack_size < page_) {
  if (packed_) {
    // A power of two that divides the page: slots tile each page exactly, and
    // the header and tail come out of the requested bytes.
    slot_size_ = std::bit_ceil(std::max<std::size_t>(stack_size, kMinPackedSlot));
  } else {
    // The slot holds the requested stack plus the header and tail above it.
    slot_size_ =
        round_up(std::max<std::size_t>(stack_size, 2 * page_) + sizeof(Stack) + kTail, page_);
  }
}

char* StackPool::top_page(char* slot_lo) const noexcept {
  auto last = reinterpret_cast<std::uintptr_t>(slot_lo) + slot_size_ - 1;
  return reinterpret_cast<char*>(last & ~(static_cast<std::uintptr_t>(page_) - 1));
}

StackPool::~StackPool() {
  // Every stack is free by now (RuntimeImpl's shutdown releases every fiber,
  // and the workers give back their caches), so the free list holds them all.
  while (free_) {
    Stack* s = free_;
    free_ = s->next;
    if (small_) {
      arch::valgrind_stack_deregister(s->valgrind_id);
      s->~Stack();
    } else {
      unmap_normal(s);
    }
  }
  for (const Slab& s : slabs_) ::munmap(s.base, s.len);
}

Stack* StackPool::prepare(char* slot_lo, bool first_in_slab) noexcept {
  char* top = slot_lo + slot_size_;
  auto* s = ::new (top - kTail - sizeof(Stack)) Stack();
  s->lo = slot_lo;
  s->pool = this;
  s->first_in_slab = first_in_slab;
  std::atomic_ref<std::uint64_t>(*canary_of(s)).store(canary_value(s), std::memory_order_relaxed);
  s->valgrind_id = arch::valgrind_stack_register(slot_lo, top);
  return s;
}

// len bytes, committed lazily, whose first page is a PROT_NONE guard. huge:
// the bytes after the guard placed and advised for huge pages.
char* StackPool::map_guarded(std::size_t len, bool huge) const {
  constexpr int kFlags = MAP_NORESERVE | MAP_STACK;
  void* p = huge ? map_for_huge_pages(len, page_, kFlags)
                 : ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | kFlags, -1, 0);
  if (p == MAP_FAILED) throw_stack_alloc_error(errno, len);
  if (::mprotect(p, page_, PROT_NONE) != 0) {
    int err = errno;
    ::munmap(p, len);
    throw_stack_alloc_error(err, len);
  }
  return static_cast<char*>(p);
}

// Called without mu_: the mmap, the mprotect and the header's page fault
// happen outside it, and only the list of all stacks is edited under it.
void StackPool::map_normal(Stack** out) {
  char* p = map_guarded(page_ + slot_size_, false);
  PageRange top{p + page_ + slot_size_ - page_, page_};  // the header's page (see take)
  populate_pages(&top, 1);
  Stack* s = prepare(p + page_, false);
  try {
    std::lock_guard lock(mu_);
    s->pool_index = static_cast<std::uint32_t>(normals_.size());
    normals_.push_back(s);
  } catch (...) {
    arch::valgrind_stack_deregister(s->valgrind_id);
    s->~Stack();
    ::munmap(p, page_ + slot_size_);
    throw;
  }
  mapped_.fetch_add(1, std::memory_order_relaxed);
  *out = s;
}

void StackPool::unmap_normal(Stack* s) noexcept {
  Stack* last = normals_.back();  // swap-remove from the list of all stacks
  normals_[s->pool_index] = last;
  last->pool_index = s->pool_index;
  normals_.pop_back();
  arch::valgrind_stack_deregister(s->valgrind_id);
  char* base = s->lo - page_;
  s->~Stack();
  ::munmap(base, page_ + slot_size_);
  mapped_.fetch_sub(1, std::memory_order_relaxed);
}

void StackPool::map_slab() {
  std::size_t slots = std::max<std::size_t>(1, kSlabBytes / slot_size_);
  std::size_t len = page_ + slots * slot_size_;
  // Packed slots fill every page they touch, so huge pages cost them no
  // memory, and they save the most: see "Huge pages" in stack_pool.hpp. Not
  // the first slab, which a program with a few thousand fibers never leaves
  // (it would pay 2 MiB for a few pages), and never where a huge page would
  // be half empty: bigger small slots keep only their top page resident.
  const bool huge = packed_ && !slabs_.empty();
  char* p = map_guarded(len, huge);
  slabs_.push_back(Slab{p, len, huge});
  bump_ = p + page_;
  bump_end_ = p + len;
}

std::size_t StackPool::take(Stack** out, std::size_t n) {
  // Slots that need a header (fresh ones, and trimmed ones whose pages were
  // returned) are only reserved under the lock and prepared after it: writing
  // the header faults in the slot's top page, and the other workers' refills
  // must not queue behind those faults. A new normal stack is mapped after
  // it too. (A fiber whose stack lies just above a reserved slot may read
  // that slot's canary meanwhile: it reads 0, which slot_below's users take
  // as "not in use", or the canary itself.)
  n = std::min(n, kMaxTake);
  char* lo[kMaxTake];
  bool first[kMaxTake];
  std::size_t got = 0, fresh = 0;
  bool map_one_normal = false;
  {
    std::lock_guard lock(mu_);
    while (got < n && free_) {
      out[got++] = free_;
      free_ = free_->next;
    }
    nfree_.store(nfree_.load(std::memory_order_relaxed) - got, std::memory_order_relaxed);
    if (got && pinned_.load(std::memory_order_relaxed))
      pinned_.store(0, std::memory_order_relaxed);  // a page-mate may be free now
    while (got + fresh < n && !trimmed_.empty()) {
      lo[fresh] = trimmed_.back().lo;
      first[fresh++] = trimmed_.back().first_in_slab;
      trimmed_.pop_back();
    }
    if (got + fresh == 0) {
      // Nothing free: map. A normal stack is mapped one at a time (each is
      // its own mapping anyway); small slots come from the current slab.
      map_one_normal = !small_;
      while (small_ && fresh < n) {
        if (bump_ == bump_end_) {
          if (fresh > 0) break;
          map_slab();
        }
        lo[fresh] = bump_;
        first[fresh++] = bump_ == slabs_.back().base + page_;
        bump_ += slot_size_;
        mapped_.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  if (map_one_normal) {
    map_normal(out);
    return 1;
  }
  // Commit every fresh slot's top page (its header, and the frames the fiber
  // starts with) in one call before writing the headers: a page fault each
  // costs twice as much on a VM (fiber/populate.hpp).
  // Packed slots share pages: a page is listed once for a run of its slots.
  static_assert(kMaxTake <= kMaxPopulate);
  PageRange tops[kMaxTake];
  std::size_t pages = 0;
  for (std::size_t i = 0; i < fresh; ++i) {
    char* page = top_page(lo[i]);
    if (pages == 0 || tops[pages - 1].lo != page) tops[pages++] = {page, page_};
  }
  populate_pages(tops, pages);
  for (std::size_t i = 0; i < fresh; ++i) out[got++] = prepare(lo[i], first[i]);
  return got;
}

void StackPool::give(Stack* const* in, std::size_t n) noexcept {
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < n; ++i) {
    in[i]->next = free_;
    free_ = in[i];
  }
  nfree_.store(nfree_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

std::size_t StackPool::trim(std::size_t keep) noexcept {
  if (!trim_due(keep)) return 0;
  // Detach the excess under the lock, return its memory outside it.
  Stack* excess = nullptr;
  std::size_t n = 0;
  {
    std::lock_guard lock(mu_);
    while (nfree_.load(std::memory_order_relaxed) > keep && free_) {
      Stack* s = free_;
      free_ = s->next;
      s->next = excess;
      excess = s;
      nfree_.store(nfree_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
      ++n;
    }
  }
  if (packed_) return n - trim_packed(excess, n);
  std::vector<Trimmed> trimmed;
  if (small_) trimmed.reserve(n);
  while (excess) {
    Stack* s = excess;
    excess = s->next;
    if (!small_) {
      std::lock_guard lock(mu_);  // unmap_normal edits the list of all stacks
      unmap_normal(s);
      continue;
    }
    trimmed.push_back(release_slot(s));
    // The header's page too: it reads as zeros now.
    ::madvise(trimmed.back().lo, slot_size_, MADV_DONTNEED);
  }
  if (!trimmed.empty()) {
    std::lock_guard lock(mu_);
    trimmed_.insert(trimmed_.end(), trimmed.begin(), trimmed.end());
  }
  return n;
}

StackPool::Trimmed StackPool::release_slot(Stack* s) noexcept {
  Trimmed t{s->lo, s->first_in_slab};
  arch::valgrind_stack_deregister(s->valgrind_id);
  s->~Stack();
  return t;
}

// Packed slots share pages, and a page goes back to the kernel only when
// every slot on it is among the excess; the slots of a page with one in use
// (or kept) return to the free list, and trim_due() leaves them out until
// the next take(), so an idle worker does not sort them again and again.
// Returns how many went back there.
std::size_t StackPool::trim_packed(Stack* excess, std::size_t n) noexcept {
  std::vector<Stack*> slots;
  slots.reserve(n);
  for (Stack* s = excess; s; s = s->next) slots.push_back(s);
  std::sort(slots.begin(), slots.end());
  const std::size_t per_page = page_ / slot_size_;
  std::vector<Trimmed> trimmed;
  std::vector<char*> pages;  // those that go back
  std::size_t kept = 0;      // slots[0, kept): those that go back to the free list
  for (std::size_t i = 0; i < slots.size();) {
    char* page = top_page(slots[i]->lo);
    std::size_t j = i;
    while (j < slots.size() && top_page(slots[j]->lo) == page) ++j;
    if (j - i == per_page) {
      for (std::size_t k = i; k < j; ++k) trimmed.push_back(release_slot(slots[k]));
      pages.push_back(page);
    } else {
      while (i < j) slots[kept++] = slots[i++];
    }
    i = j;
  }
  unadvise_huge(pages);
  // The headers too: they read as zeros now.
  for (char* page : pages) ::madvise(page, page_, MADV_DONTNEED);
  {
    std::lock_guard lock(mu_);
    trimmed_.insert(trimmed_.end(), trimmed.begin(), trimmed.end());
    // Before give(): a take() after it clears this, never the other way round.
    pinned_.store(kept, std::memory_order_relaxed);
  }
  give(slots.data(), kept);
  return kept;
}

// A slab with a page to return gives up its huge pages first. Otherwise the
// kernel's khugepaged, which collapses an advised range into a huge page
// even where most of its small pages are missing, would bring the returned
// pages back (as zeros, but resident). MADV_DONTNEED then splits the huge
// page it falls in and frees just that page. Reused, the slab's trimmed
// slots fault in small pages, as they always did.
void StackPool::unadvise_huge(const std::vector<char*>& pages) noexcept {
  std::vector<Slab*> huge;  // by address, to walk beside the sorted pages
  for (Slab& s : slabs_)
    if (s.huge) huge.push_back(&s);
  std::sort(huge.begin(), huge.end(), [](Slab* a, Slab* b) { return a->base < b->base; });
  std::size_t k = 0;
  for (char* page : pages) {  // ascending (trim_packed sorts the slots)
    while (k < huge.size() && huge[k]->base + huge[k]->len <= page) ++k;
    if (k == huge.size()) return;
    Slab& s = *huge[k];
    if (page >= s.base && s.huge) {
      ::madvise(s.base + page_, s.len - page_, MADV_NOHUGEPAGE);
      s.huge = false;
    }
  }
}

}  // namespace chronos::detail
