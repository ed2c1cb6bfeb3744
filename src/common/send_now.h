#pragma once

#include <sys/socket.h>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <cerrno>
#include <cstddef>
#include <tuple>

namespace kedge {

/// Sends as much of `buffer` as the socket `fd` takes now, without waiting: the error (not
/// EAGAIN, which only ends the sending) and how many bytes went. A response or request nearly
/// always fits the socket's buffer; sent here, it costs no round through asio's reactor (whose
/// write would send the same way, then queue its completion and resume the caller from there).
inline std::tuple<boost::system::error_code, size_t> send_now(int fd,
                                                              boost::asio::const_buffer buffer) {
  size_t done = 0;
  while (done < buffer.size()) {
    ssize_t n = ::send(fd, static_cast<const char*>(buffer.data()) + done, buffer.size() - done,
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<size_t>(n);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else if (errno != EINTR) {
      return {boost::system::error_code(errno, boost::system::system_category()), done};
    }
  }
  return {boost::system::error_code(), done};
}

}  // namespace kedge
