// Drawing progress: a bar on a terminal, periodic log lines elsewhere.
#include "tools/progress_renderer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace sdiff::tools {
namespace {

constexpr int kBarWidth = 30;

uint64_t Rate(uint64_t done, double seconds) {
  return seconds > 0 ? static_cast<uint64_t>(static_cast<double>(done) / seconds) : 0;
}

// Percent of an estimate: never 100 before the work says it finished.
uint64_t Percent(const plugin::Progress& p) {
  if (p.finished) return 100;
  return std::min<uint64_t>(99, p.done * 100 / p.total);
}

}  // namespace

ProgressRenderer::ProgressRenderer(Options options) : options_(std::move(options)) {
  if (!options_.log) options_.log = [](const std::string& line) { spdlog::info("{}", line); };
  if (!options_.now) options_.now = [] { return Clock::now(); };
}

ProgressRenderer::Options ProgressRenderer::ForStderr(bool bars) {
  Options o;
  o.terminal = bars && isatty(STDERR_FILENO) == 1;
  return o;
}

std::string ProgressRenderer::Line(const plugin::Progress& p, double seconds) {
  const char* name = plugin::ProgressName(p.kind);
  const char* unit = plugin::ProgressUnit(p.kind);
  if (p.total == 0) {
    return fmt::format("{}: {} {}, {} {}/s", name, p.done, unit, Rate(p.done, seconds), unit);
  }
  return fmt::format("{}: {} of ~{} {} ({}%), {} {}/s", name, p.done, p.total, unit, Percent(p),
                     Rate(p.done, seconds), unit);
}

std::string ProgressRenderer::Bar(const plugin::Progress& p, double seconds) {
  if (p.total == 0) return Line(p, seconds);
  int filled = static_cast<int>(Percent(p) * kBarWidth / 100);
  return fmt::format("{} [{:#<{}}{:-<{}}] {:>3}% {}/~{} {}", plugin::ProgressName(p.kind), "",
                     filled, "", kBarWidth - filled, Percent(p), p.done, p.total,
                     plugin::ProgressUnit(p.kind));
}

void ProgressRenderer::Report(const plugin::Progress& p) {
  net::MutexLock lock(&mu_);
  Work& w = work_[static_cast<size_t>(p.kind)];
  Clock::time_point now = options_.now();
  if (!w.running) {
    w = Work{true, false, now, now};
  }
  double seconds = std::chrono::duration<double>(now - w.start).count();
  if (p.finished) {
    if (w.shown) {
      if (options_.terminal) {
        fmt::print(options_.out, "\r\x1b[K");  // erase the bar; the line below replaces it
        std::fflush(options_.out);
      }
      options_.log(fmt::format("{}: done, {} {} in {:.1f} s", plugin::ProgressName(p.kind), p.done,
                               plugin::ProgressUnit(p.kind), seconds));
    }
    w = Work{};
    return;
  }
  if (now - w.start < options_.show_after) return;
  if (options_.terminal) {
    if (w.shown && now - w.last_shown < options_.redraw_every) return;
    fmt::print(options_.out, "\r{}\x1b[K", Bar(p, seconds));
    std::fflush(options_.out);
  } else {
    // The first line comes after log_every of work, then one per log_every.
    if (now - w.last_shown < options_.log_every) return;
    options_.log(Line(p, seconds));
  }
  w.shown = true;
  w.last_shown = now;
}

}  // namespace sdiff::tools
