// bench/counting_new.hpp: a global operator new (every form) that counts its
// calls, for benchmarks that report allocations per operation. Include it in
// exactly one translation unit of a program: it defines the replacements.
//
//   std::uint64_t before = counting_new::calls();
//   ...timed work...
//   std::uint64_t allocs = counting_new::calls() - before;
//
// Counts calls from every thread (one relaxed fetch_add each); memory comes
// from malloc / aligned_alloc, and every operator delete frees it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace counting_new {

inline std::atomic<std::uint64_t> g_calls{0};

inline std::uint64_t calls() noexcept {
  return g_calls.load(std::memory_order_relaxed);
}

// null on failure (the nothrow forms return it; the others throw).
inline void* allocate(std::size_t n, std::size_t align) noexcept {
  g_calls.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  // aligned_alloc wants the size to be a multiple of the alignment.
  return std::aligned_alloc(align, (n + align - 1) / align * align);
}

inline void* allocate_or_throw(std::size_t n, std::size_t align) {
  for (;;) {
    if (void* p = allocate(n, align)) return p;
    std::new_handler h = std::get_new_handler();
    if (!h) throw std::bad_alloc();
    h();
  }
}

}  // namespace counting_new

void* operator new(std::size_t n) {
  return counting_new::allocate_or_throw(n, 0);
}
void* operator new[](std::size_t n) {
  return counting_new::allocate_or_throw(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counting_new::allocate_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counting_new::allocate_or_throw(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counting_new::allocate(n, 0);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counting_new::allocate(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counting_new::allocate(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counting_new::allocate(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
