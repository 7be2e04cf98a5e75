// Lookup: the blocking lookup on a detached thread, its outcome posted back.
#include "net/lookup.h"

#include <pthread.h>

#include <thread>

namespace sdiff::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

LookupFun SystemLookup() {
  return [](const std::string& host, const std::string& port, tcp::resolver::results_type* out) {
    // A private io_context: a blocking resolve runs getaddrinfo in this
    // thread and needs no other.
    asio::io_context io;
    tcp::resolver resolver(io);
    boost::system::error_code ec;
    *out = resolver.resolve(host, port, ec);
    return ec;
  };
}

std::shared_ptr<Lookup> Lookup::Start(asio::any_io_executor executor, LookupFun fn,
                                      std::string host, std::string port, Handler done) {
  std::shared_ptr<Lookup> lookup(new Lookup(std::move(executor), std::move(done)));
  if (!fn) fn = SystemLookup();
  // Detached: nobody waits for a lookup that may never return. It holds only
  // the Lookup, which lives as long as it needs to.
  std::thread([lookup, fn = std::move(fn), host = std::move(host), port = std::move(port)] {
    pthread_setname_np(pthread_self(), "sdiff-lookup");
    tcp::resolver::results_type results;
    boost::system::error_code ec = fn(host, port, &results);
    lookup->Finish(ec, std::move(results));
  }).detach();
  return lookup;
}

void Lookup::Finish(boost::system::error_code ec, tcp::resolver::results_type results) {
  // Posted under the lock: Abandon, which the owner calls before its
  // io_context goes, cannot return while the executor is being used.
  MutexLock lock(&mu_);
  if (abandoned_) return;
  asio::post(executor_, [self = shared_from_this(), ec, results = std::move(results)] {
    Handler done;
    {
      MutexLock lock(&self->mu_);
      if (self->abandoned_) return;  // abandoned after the post
      done = std::move(self->done_);
    }
    if (done) done(ec, results);
  });
}

void Lookup::Abandon() {
  MutexLock lock(&mu_);
  abandoned_ = true;
  done_ = nullptr;
  executor_ = asio::any_io_executor();
}

}  // namespace sdiff::net
