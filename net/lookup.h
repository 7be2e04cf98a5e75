// Lookup: a client's HOST:PORT name lookup that its caller can stop waiting
// for at a deadline. getaddrinfo cannot be interrupted, and asio's resolver,
// async_resolve included, completes only when getaddrinfo returns (a cancel
// just changes the result) and joins its lookup thread when its io_context is
// destroyed: a DNS server that never answers would hold a connect past its
// deadline, and a client's shutdown with it. A Lookup runs the blocking call
// on a detached thread of its own that the caller can abandon.
#pragma once

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <functional>
#include <memory>
#include <string>

#include "net/mutex.h"
#include "net/thread_annotations.h"

namespace sdiff::net {

// The blocking lookup itself; a seam for tests (a name server that never
// answers). Runs on the Lookup's own thread.
using LookupFun =
    std::function<boost::system::error_code(const std::string& host, const std::string& port,
                                            boost::asio::ip::tcp::resolver::results_type* out)>;

// getaddrinfo, through asio's blocking resolve.
LookupFun SystemLookup();

class Lookup : public std::enable_shared_from_this<Lookup> {
 public:
  using Handler = std::function<void(const boost::system::error_code&,
                                     boost::asio::ip::tcp::resolver::results_type)>;

  // Runs `fn` (empty: SystemLookup()) for host:port on a new thread and
  // then runs `done` on `executor` with its outcome, unless Abandon() came
  // first. The caller must Abandon() (or see `done` run) before the
  // executor's io_context is destroyed.
  static std::shared_ptr<Lookup> Start(boost::asio::any_io_executor executor, LookupFun fn,
                                       std::string host, std::string port, Handler done);

  // Any thread. Once it returns `done` will not run; the thread, if still
  // blocked, ends on its own when the lookup returns, touching nothing else.
  void Abandon();

 private:
  Lookup(boost::asio::any_io_executor executor, Handler done)
      : executor_(std::move(executor)), done_(std::move(done)) {}
  void Finish(boost::system::error_code ec, boost::asio::ip::tcp::resolver::results_type results);

  Mutex mu_;
  boost::asio::any_io_executor executor_ GUARDED_BY(mu_);  // reset by Abandon
  Handler done_ GUARDED_BY(mu_);
  bool abandoned_ GUARDED_BY(mu_) = false;
};

}  // namespace sdiff::net
