// LogCapture: a logger whose lines a test can read while other threads log,
// to check that a daemon said why (and how often).
#pragma once

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sdiff::testing {

class LogCapture : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // A logger writing here (every level).
  static std::shared_ptr<spdlog::logger> Logger(std::shared_ptr<LogCapture> sink) {
    auto logger = std::make_shared<spdlog::logger>("capture", std::move(sink));
    logger->set_level(spdlog::level::trace);
    return logger;
  }

  // How many lines so far contain `text`.
  size_t Count(const std::string& text) {
    std::lock_guard lock(mutex_);
    return std::count_if(lines_.begin(), lines_.end(), [&](const std::string& line) {
      return line.find(text) != std::string::npos;
    });
  }

  // The first line containing `text`, or "".
  std::string Find(const std::string& text) {
    std::lock_guard lock(mutex_);
    for (const std::string& line : lines_) {
      if (line.find(text) != std::string::npos) return line;
    }
    return "";
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {  // under mutex_
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;  // GUARDED_BY(mutex_)
};

}  // namespace sdiff::testing
