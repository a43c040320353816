#include "runtime/threadpool.h"

#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#include <pthread.h>

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
// How long an idle worker polls for the next step before it sleeps on the condition variable
// (unless the pool is busy), and how long the caller polls for a late worker.
constexpr auto kSpin = std::chrono::microseconds(200);
// Past this much polling a waiting thread yields the CPU between polls: on a quiet machine
// sched_yield returns at once, on a busy one a descheduled peer (or another process) can run.
constexpr auto kPureSpin = std::chrono::microseconds(20);
// Tasks of one generation: the ticket counts claims from the front and from the back in 16 bits
// each.
constexpr int64_t kMaxTasks = 0xFFFF;

// One poll of a waiting thread that started waiting at `since`.
void pause_or_yield(std::chrono::steady_clock::time_point now,
                    std::chrono::steady_clock::time_point since) {
  if (now - since < kPureSpin) TMN_PAUSE();
  else std::this_thread::yield();
}
}  // namespace

// Sleeping and notifying pair up without a lost wake-up because both sides use sequentially
// consistent atomics: a sleeper announces itself (workers_asleep_ / caller_asleep_) and then
// checks its condition under the mutex; the other side changes the condition and then checks
// for sleepers, taking the mutex to notify only when there is one.
void ThreadPool::set_busy(bool busy) {
  if (workers_.empty() || forked()) return;
  busy_.store(busy);
  if (busy && workers_asleep_.load() > 0) {
    { std::lock_guard<std::mutex> lock(sync_->mutex); }
    sync_->wake.notify_all();
  }
}

// Forks of this process so far, counted in the child (so checking for a fork costs a load,
// not a getpid() system call per step).
static std::atomic<uint64_t> forks{0};

static uint64_t forks_now() {
  static std::once_flag registered;
  std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, [] { forks.fetch_add(1); }); });
  return forks.load();
}

ThreadPool::ThreadPool(int threads) : forks_at_start_(forks_now()) {
  for (int t = 1; t < threads; ++t) workers_.emplace_back(&ThreadPool::worker_main, this, t);
}

bool ThreadPool::forked() const {
  return forks.load(std::memory_order_relaxed) != forks_at_start_;
}

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

// The caller claims tasks from the front, workers from the back: with two threads each takes
// one contiguous run of tasks, the same half of the rows in every step, so a step mostly
// reads what the same core wrote in the step before (not the other core's cache).
void ThreadPool::run_tasks(uint32_t gen, int thread) {
  const bool from_back = thread != 0;
  uint64_t ticket = ticket_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(ticket >> 32) != gen) return;  // a later step: not ours
    const int64_t tasks = tasks_.load(std::memory_order_acquire);
    const int64_t front = (ticket >> 16) & 0xFFFF, back = ticket & 0xFFFF;
    if (front + back >= tasks) return;
    const uint64_t claimed = ticket + (from_back ? 1 : uint64_t{1} << 16);
    if (!ticket_.compare_exchange_weak(ticket, claimed, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
      continue;  // `ticket` now holds the current value: check it again
    const int64_t task = from_back ? tasks - 1 - back : front;
    try {
      (*fn_)(task, thread);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    if (finished_.fetch_add(1) + 1 == tasks_.load(std::memory_order_relaxed) &&
        caller_asleep_.load()) {
      { std::lock_guard<std::mutex> lock(sync_->mutex); }
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
  if (tasks > kMaxTasks) {  // more than the ticket's counters hold: in blocks
    for (int64_t first = 0; first < tasks; first += kMaxTasks)
      parallel_for(std::min(kMaxTasks, tasks - first),
                   [&](int64_t task, int thread) { fn(first + task, thread); });
    return;
  }
  // Publish the step in two generations. First `closed` (no task can be claimed), so a worker
  // still holding a ticket of the previous step can no longer claim against the new count;
  // the release store of tasks_ orders that before any worker that reads the new count. Then
  // `open` with task 0.
  const uint32_t closed = static_cast<uint32_t>(ticket_.load(std::memory_order_relaxed) >> 32) + 1;
  const uint32_t gen = closed + 1;
  ticket_.store((static_cast<uint64_t>(closed) << 32) | 0xFFFFFFFFu, std::memory_order_relaxed);  // all claimed
  fn_ = &fn;
  error_ = nullptr;
  finished_.store(0, std::memory_order_relaxed);
  tasks_.store(tasks, std::memory_order_release);
  ticket_.store(static_cast<uint64_t>(gen) << 32);
  if (workers_asleep_.load() > 0) {
    { std::lock_guard<std::mutex> lock(sync_->mutex); }
    sync_->wake.notify_all();
  }
  run_tasks(gen, 0);
  // Every task is claimed; wait for the ones still running elsewhere.
  const auto since = std::chrono::steady_clock::now();
  while (finished_.load(std::memory_order_acquire) != tasks) {
    const auto now = std::chrono::steady_clock::now();
    if (now - since > kSpin) {
      std::unique_lock<std::mutex> lock(sync_->mutex);
      caller_asleep_.store(true);
      sync_->done.wait(lock, [&] { return finished_.load() == tasks; });
      caller_asleep_.store(false);
      break;
    }
    pause_or_yield(now, since);
  }
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::worker_main(int thread) {
  uint32_t seen = 0;
  auto generation = [&] { return static_cast<uint32_t>(ticket_.load() >> 32); };
  for (;;) {
    uint32_t gen = generation();
    const auto since = std::chrono::steady_clock::now();
    auto spin_until = since + kSpin;
    while (gen == seen) {
      const auto now = std::chrono::steady_clock::now();
      if (busy_.load(std::memory_order_relaxed)) spin_until = now + kSpin;
      else if (now >= spin_until) break;
      pause_or_yield(now, since);
      gen = generation();
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(sync_->mutex);
      workers_asleep_.fetch_add(1);
      sync_->wake.wait(lock, [&] { return stop_ || busy_.load() || generation() != seen; });
      workers_asleep_.fetch_sub(1);
      if (stop_) return;
      continue;  // a new step, or a busy caller: spin for the step
    }
    seen = gen;
    run_tasks(gen, thread);
  }
}

}  // namespace tmn
