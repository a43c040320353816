// A persistent thread pool for the compiled plan: the calling thread works too. While a caller
// holds the pool busy (Busy: one inference, ~60 short steps back to back, some of them on the
// caller alone) idle workers spin, so none has to be woken between two steps; otherwise they
// spin briefly (back-to-back calls) and then sleep, so an idle model costs no CPU. One
// parallel_for at a time per pool (callers serialise).
//
// Tasks are claimed from one atomic ticket that carries the generation (the caller from the
// front, workers from the back, so each thread keeps to its part of the rows from step to
// step): the caller waits only for tasks that were claimed, and claims the rest itself, so a
// worker the OS has descheduled (a busy machine) never stalls a step; when it wakes up late
// it finds nothing to claim.
// Each step is published as two generations (closed, then open) so that a late worker can
// never claim a task of an old step against the new step's task count.
//
// fork(): the child inherits the pool object but none of its workers (nor a usable state of
// their mutex / condition variables), so in a forked child parallel_for runs every task on
// the caller, and the destructor detaches the workers and leaks their mutex and condition
// variables (joining a thread, or destroying a condition variable it waited on, that does not
// exist in this process would wait forever).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tmn {

class ThreadPool {
 public:
  // `threads` in total, the caller included (1 = everything runs on the caller).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads a step is spread over (1 in a forked child: see above).
  int size() const { return forked() ? 1 : static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task, thread) for every task in [0, tasks), spread over the threads (thread is
  // in [0, size()), 0 = the caller); returns when all are done. The first exception thrown
  // by fn is rethrown here once every task has run.
  void parallel_for(int64_t tasks, const std::function<void(int64_t, int)>& fn);

  // Physical cores of this machine (logical CPUs / SMT siblings), at least 1.
  static int default_threads();

  // Keeps the workers spinning (and wakes sleeping ones) for the scope's lifetime.
  class Busy {
   public:
    explicit Busy(ThreadPool& pool) : pool_(pool) { pool_.set_busy(true); }
    ~Busy() { pool_.set_busy(false); }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

   private:
    ThreadPool& pool_;
  };

 private:
  bool forked() const;
  void set_busy(bool busy);
  void worker_main(int thread);
  // Claims and runs tasks of generation `gen` until none is left.
  void run_tasks(uint32_t gen, int thread);

  std::vector<std::thread> workers_;
  const uint64_t forks_at_start_;  // forks counted when the workers started (see forked())
  struct Sync {
    std::mutex mutex;
    std::condition_variable wake, done;
  };
  Sync* const sync_ = new Sync;  // on the heap so a forked child can leak it (see above)
  // The caller publishes a step on this line and the workers poll it; the completion count
  // the caller polls is on a line of its own.
  // (generation << 32) | (tasks claimed from the front << 16) | tasks claimed from the back
  alignas(64) std::atomic<uint64_t> ticket_{0};
  std::atomic<int64_t> tasks_{0};
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  std::atomic<bool> busy_{false};
  alignas(64) std::atomic<int64_t> finished_{0};  // tasks of the current generation that have run
  // Who waits on a condition variable (so the other side takes the mutex to notify only then).
  std::atomic<int> workers_asleep_{0};
  std::atomic<bool> caller_asleep_{false};
  std::exception_ptr error_;
  std::mutex error_mutex_;
  bool stop_ = false;
};

}  // namespace tmn
