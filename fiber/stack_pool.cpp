// fiber/stack_pool.cpp: mapping, carving, pooling and unmapping fiber slots.
// The layout and the policy are described in stack_pool.hpp.
#include "fiber/stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <new>
#include <string>
#include <system_error>

namespace chronos::detail {
namespace {

constexpr std::size_t kSlabBytes = 4u << 20;  // small slots are carved from ~4 MiB slabs

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

StackPool::StackPool(RuntimeImpl* rt, std::size_t stack_size, bool small)
    : rt_(rt), small_(small), page_(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))) {
  // The slot holds the requested stack plus the TCB and tail above it.
  slot_size_ =
      round_up(std::max<std::size_t>(stack_size, 2 * page_) + sizeof(Fiber) + kTail, page_);
}

StackPool::~StackPool() {
  // Every fiber has been released by now (RuntimeImpl's shutdown guarantees
  // it), so the free list holds every normal stack.
  while (free_) {
    Fiber* f = free_;
    free_ = f->next;
    if (small_) {
      arch::valgrind_stack_deregister(f->valgrind_id);
      f->~Fiber();
    } else {
      unmap_normal(f);
    }
  }
  for (auto [base, len] : slabs_) ::munmap(base, len);
}

Fiber* StackPool::prepare(char* slot_lo, bool first_in_slab) noexcept {
  char* top = slot_lo + slot_size_;
  auto* f = ::new (top - kTail - sizeof(Fiber)) Fiber();
  f->first_in_slab = first_in_slab;
  f->rt = rt_;
  f->pool = this;
  f->stack_lo = slot_lo;
  std::atomic_ref<std::uint64_t>(*canary_of(f)).store(canary_value(f), std::memory_order_relaxed);
  f->valgrind_id = arch::valgrind_stack_register(slot_lo, f);
  return f;
}

// len bytes, committed lazily, whose first page is a PROT_NONE guard.
char* StackPool::map_guarded(std::size_t len) const {
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) throw_stack_alloc_error(errno, len);
  if (::mprotect(p, page_, PROT_NONE) != 0) {
    int err = errno;
    ::munmap(p, len);
    throw_stack_alloc_error(err, len);
  }
  return static_cast<char*>(p);
}

void StackPool::map_normal(Fiber** out) {
  char* p = map_guarded(page_ + slot_size_);
  *out = prepare(p + page_, false);
  (*out)->pool_index = static_cast<std::uint32_t>(normals_.size());
  normals_.push_back(*out);
  mapped_.fetch_add(1, std::memory_order_relaxed);
}

void StackPool::unmap_normal(Fiber* f) noexcept {
  Fiber* last = normals_.back();  // swap-remove from the list of all stacks
  normals_[f->pool_index] = last;
  last->pool_index = f->pool_index;
  normals_.pop_back();
  arch::valgrind_stack_deregister(f->valgrind_id);
  char* base = f->stack_lo - page_;
  f->~Fiber();
  ::munmap(base, page_ + slot_size_);
  mapped_.fetch_sub(1, std::memory_order_relaxed);
}

void StackPool::for_each_fiber(void (*fn)(Fiber*, void*), void* arg) {
  struct Filter {
    void (*fn)(Fiber*, void*);
    void* arg;
  } filter{fn, arg};
  for_each_slot(
      [](Fiber* f, void* p) {
        auto* flt = static_cast<Filter*>(p);
        if (f->ops) flt->fn(f, flt->arg);  // a free slot has no payload operations
      },
      &filter);
}

void StackPool::for_each_slot(void (*fn)(Fiber*, void*), void* arg) {
  std::lock_guard lock(mu_);
  auto visit = [&](Fiber* f) { fn(f, arg); };
  if (!small_) {
    for (Fiber* f : normals_) visit(f);
    return;
  }
  for (auto [base, len] : slabs_) {
    char* end = base + len;
    if (bump_ >= base && bump_ <= end) end = bump_;  // the newest slab is used up to bump_
    for (char* slot = base + page_; slot + slot_size_ <= end; slot += slot_size_) {
      auto* f = reinterpret_cast<Fiber*>(slot + slot_size_ - kTail - sizeof(Fiber));
      if (f->stack_lo == slot) visit(f);  // a trimmed slot reads as zeros
    }
  }
}

void StackPool::map_slab() {
  std::size_t slots = std::max<std::size_t>(1, kSlabBytes / slot_size_);
  std::size_t len = page_ + slots * slot_size_;
  char* p = map_guarded(len);
  slabs_.emplace_back(p, len);
  bump_ = p + page_;
  bump_end_ = p + len;
}

std::size_t StackPool::take(Fiber** out, std::size_t n) {
  std::lock_guard lock(mu_);
  std::size_t got = 0;
  while (got < n && free_) {
    out[got++] = free_;
    free_ = free_->next;
  }
  nfree_.store(nfree_.load(std::memory_order_relaxed) - got, std::memory_order_relaxed);
  while (got < n && !trimmed_.empty()) {
    out[got++] = prepare(trimmed_.back().lo, trimmed_.back().first_in_slab);
    trimmed_.pop_back();
  }
  if (got > 0) return got;
  // Nothing free: map. A normal stack is mapped one at a time (each is its own
  // mapping anyway); small slots come from the current slab.
  if (!small_) {
    map_normal(out);
    return 1;
  }
  while (got < n) {
    if (bump_ == bump_end_) {
      if (got > 0) break;
      map_slab();
    }
    out[got++] = prepare(bump_, bump_ == slabs_.back().first + page_);
    bump_ += slot_size_;
    mapped_.fetch_add(1, std::memory_order_relaxed);
  }
  return got;
}

void StackPool::give(Fiber* const* in, std::size_t n) noexcept {
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < n; ++i) {
    in[i]->next = free_;
    free_ = in[i];
  }
  nfree_.store(nfree_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

std::size_t StackPool::trim(std::size_t keep) noexcept {
  if (nfree_.load(std::memory_order_relaxed) <= keep) return 0;
  // Detach the excess under the lock, return its memory outside it.
  Fiber* excess = nullptr;
  std::size_t n = 0;
  {
    std::lock_guard lock(mu_);
    while (nfree_.load(std::memory_order_relaxed) > keep && free_) {
      Fiber* f = free_;
      free_ = f->next;
      f->next = excess;
      excess = f;
      nfree_.store(nfree_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
      ++n;
    }
  }
  std::vector<Trimmed> trimmed;
  if (small_) trimmed.reserve(n);
  while (excess) {
    Fiber* f = excess;
    excess = f->next;
    if (!small_) {
      std::lock_guard lock(mu_);  // unmap_normal edits the list of all stacks
      unmap_normal(f);
      continue;
    }
    Trimmed t{f->stack_lo, f->first_in_slab};
    arch::valgrind_stack_deregister(f->valgrind_id);
    f->~Fiber();
    ::madvise(t.lo, slot_size_, MADV_DONTNEED);  // the TCB's page too: it reads as zeros now
    trimmed.push_back(t);
  }
  if (!trimmed.empty()) {
    std::lock_guard lock(mu_);
    trimmed_.insert(trimmed_.end(), trimmed.begin(), trimmed.end());
  }
  return n;
}

}  // namespace chronos::detail
