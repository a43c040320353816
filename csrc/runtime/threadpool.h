// A persistent thread pool for the compiled plan: the calling thread works too, workers spin
// briefly between steps (a model runs ~60 short steps back to back) and then sleep, so an
// idle model costs no CPU. One parallel_for at a time per pool (callers serialise).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
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

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task, thread) for every task in [0, tasks), spread over the threads (thread is
  // in [0, size()), 0 = the caller); returns when all are done. An exception thrown by fn is
  // rethrown here (the first one) after every task has finished or been skipped.
  void parallel_for(int64_t tasks, const std::function<void(int64_t, int)>& fn);

  // Physical cores of this machine (logical CPUs / SMT siblings), at least 1.
  static int default_threads();

 private:
  void worker_main(int thread);
  void run_tasks(int thread);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_task_{0};
  std::atomic<int> busy_workers_{0};
  int64_t tasks_ = 0;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  std::exception_ptr error_;
  std::mutex error_mutex_;
  bool stop_ = false;
};

}  // namespace tmn
