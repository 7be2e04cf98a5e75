// ProgressRenderer: shows the plugin's progress reports (plugin/progress.h)
// to a person. On a terminal a bar is redrawn in place; otherwise a log line
// every few seconds. Work that ends quickly shows nothing; work that showed
// something ends with a "done" log line. Thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

#include "net/mutex.h"
#include "net/thread_annotations.h"
#include "plugin/progress.h"

namespace sdiff::tools {

class ProgressRenderer {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    bool terminal = false;    // draw a bar on `out`; else log lines
    std::FILE* out = stderr;  // the terminal
    // Where log lines go. Default: spdlog's default logger, at info.
    std::function<void(const std::string&)> log;
    std::chrono::milliseconds log_every{5000};  // a line at most this often per piece of work
    std::chrono::milliseconds show_after{500};  // nothing for work shorter than this
    std::chrono::milliseconds redraw_every{100};
    std::function<Clock::time_point()> now;  // testing seam. Default: Clock::now
  };

  explicit ProgressRenderer(Options options);
  // A bar when stderr is a terminal and `bars` (not with JSON logs), log
  // lines otherwise.
  static Options ForStderr(bool bars = true);

  void Report(const plugin::Progress& progress);
  // Forwards to Report; the renderer must outlive whoever calls it.
  plugin::ProgressFn Callback() {
    return [this](const plugin::Progress& p) { Report(p); };
  }

 private:
  struct Work {
    bool running = false;
    bool shown = false;  // a bar or a line was shown
    Clock::time_point start, last_shown;
  };

  static std::string Line(const plugin::Progress& p, double seconds);
  static std::string Bar(const plugin::Progress& p, double seconds);

  Options options_;
  net::Mutex mu_;
  std::array<Work, 4> work_ GUARDED_BY(mu_);  // by Progress::Kind
};

}  // namespace sdiff::tools
