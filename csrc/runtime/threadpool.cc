#include "runtime/threadpool.h"

#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#include <unistd.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define TMN_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define TMN_PAUSE() __asm__ __volatile__("yield")
#else
#define TMN_PAUSE() ((void)0)
#endif

namespace tmn {

namespace {
// How long an idle worker polls for the next step before it sleeps on the condition variable.
constexpr auto kSpin = std::chrono::microseconds(200);
}  // namespace

ThreadPool::ThreadPool(int threads) : owner_pid_(static_cast<long>(getpid())) {
  for (int t = 1; t < threads; ++t) workers_.emplace_back(&ThreadPool::worker_main, this, t);
}

bool ThreadPool::forked() const { return static_cast<long>(getpid()) != owner_pid_; }

ThreadPool::~ThreadPool() {
  if (forked()) {
    for (auto& w : workers_) w.detach();
    return;  // sync_ leaks on purpose
  }
  {
    std::lock_guard<std::mutex> lock(sync_->mutex);
    stop_ = true;
  }
  sync_->wake.notify_all();
  for (auto& w : workers_) w.join();
  delete sync_;
}

int ThreadPool::default_threads() {
  // Count distinct (physical id, core id) pairs; fall back to hardware_concurrency.
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, physical = "0";
  while (std::getline(cpuinfo, line)) {
    auto value = [&] { return line.substr(line.find(':') + 1); };
    if (line.rfind("physical id", 0) == 0) physical = value();
    if (line.rfind("core id", 0) == 0) cores.emplace(physical, value());
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

void ThreadPool::run_tasks(uint32_t gen, int thread) {
  uint64_t ticket = ticket_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(ticket >> 32) != gen) return;  // a later step: not ours
    const int64_t task = static_cast<uint32_t>(ticket);
    if (task >= tasks_.load(std::memory_order_acquire)) return;
    if (!ticket_.compare_exchange_weak(ticket, ticket + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
      continue;  // `ticket` now holds the current value: check it again
    try {
      (*fn_)(task, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    if (finished_.fetch_add(1, std::memory_order_acq_rel) + 1 ==
        tasks_.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> lock(sync_->mutex);
      sync_->done.notify_one();
    }
    ticket = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::parallel_for(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1 || forked()) {
    for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
    return;
  }
  // Publish the step in two generations. First `closed` (no task can be claimed), so a worker
  // still holding a ticket of the previous step can no longer claim against the new count;
  // the release store of tasks_ orders that before any worker that reads the new count. Then
  // `open` with task 0.
  const uint32_t closed = static_cast<uint32_t>(ticket_.load(std::memory_order_relaxed) >> 32) + 1;
  const uint32_t gen = closed + 1;
  ticket_.store((static_cast<uint64_t>(closed) << 32) | 0xFFFFFFFFu, std::memory_order_relaxed);
  fn_ = &fn;
  error_ = nullptr;
  finished_.store(0, std::memory_order_relaxed);
  tasks_.store(tasks, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(sync_->mutex);  // pairs with the sleepers' predicate check
    ticket_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
  }
  sync_->wake.notify_all();
  run_tasks(gen, 0);
  // Every task is claimed; wait for the ones still running elsewhere.
  const auto spin_until = std::chrono::steady_clock::now() + kSpin;
  while (finished_.load(std::memory_order_acquire) != tasks) {
    if (std::chrono::steady_clock::now() > spin_until) {
      std::unique_lock<std::mutex> lock(sync_->mutex);
      sync_->done.wait(lock, [&] { return finished_.load(std::memory_order_acquire) == tasks; });
      break;
    }
    TMN_PAUSE();
  }
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::worker_main(int thread) {
  uint32_t seen = 0;
  for (;;) {
    auto generation = [&] { return static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32); };
    uint32_t gen = generation();
    const auto spin_until = std::chrono::steady_clock::now() + kSpin;
    while (gen == seen && std::chrono::steady_clock::now() < spin_until) {
      TMN_PAUSE();
      gen = generation();
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(sync_->mutex);
      sync_->wake.wait(lock, [&] { return stop_ || generation() != seen; });
      if (stop_) return;
      gen = generation();
    }
    seen = gen;
    run_tasks(gen, thread);
  }
}

}  // namespace tmn
