#include "protocol.h"

#include <sys/socket.h>

#include <charconv>
#include <cstring>
#include <cstdlib>
#include <vector>

namespace weft::auditor {

std::string EncodeJob(const Options& o) {
  std::string m = "J";
  auto add = [&](std::string_view field) {
    m.push_back('\0');
    m.append(field);
  };
  add(o.run);
  add(std::to_string(o.job));
  add(o.name);
  add(std::to_string(o.limits.timeout_s));
  add(std::to_string(o.limits.idle_timeout_s));
  add(std::to_string(o.limits.exit_timeout_s));
  add(std::to_string(o.limits.kill_grace_s));
  add(std::to_string(o.attempt));
  add(o.limits.keep_tmpdir ? "1" : "0");
  add(o.limits.leaks_fail ? "1" : "0");
  add(o.limits.stdin_path);
  add(o.cwd);
  add(std::to_string(o.attempts));
  add(o.stage);
  add(std::to_string(o.env.size()));
  for (const auto& e : o.env) add(e);
  for (const auto& a : o.argv) add(a);
  return m;
}

bool DecodeJob(std::string_view m, Options* o) {
  std::vector<std::string_view> f;
  size_t start = 0;
  while (start <= m.size()) {
    size_t nul = m.find('\0', start);
    if (nul == std::string_view::npos) nul = m.size();
    f.push_back(m.substr(start, nul - start));
    start = nul + 1;
  }
  if (f.size() < 17 || f[0] != "J") return false;
  o->run = std::string(f[1]);
  auto [p, ec] = std::from_chars(f[2].data(), f[2].data() + f[2].size(), o->job);
  if (ec != std::errc() || p != f[2].data() + f[2].size()) return false;
  o->name = std::string(f[3]);
  auto num = [](std::string_view v) {
    return std::strtod(std::string(v).c_str(), nullptr);
  };
  o->limits.timeout_s = num(f[4]);
  o->limits.idle_timeout_s = num(f[5]);
  o->limits.exit_timeout_s = num(f[6]);
  o->limits.kill_grace_s = num(f[7]);
  o->attempt = static_cast<int>(num(f[8]));
  o->limits.keep_tmpdir = f[9] == "1";
  o->limits.leaks_fail = f[10] == "1";
  o->limits.stdin_path = std::string(f[11]);
  o->cwd = std::string(f[12]);
  o->attempts = static_cast<int>(num(f[13]));
  o->stage = std::string(f[14]);
  size_t n_env = static_cast<size_t>(num(f[15]));
  if (n_env > f.size() - 17) return false;
  o->env.assign(f.begin() + 16, f.begin() + 16 + static_cast<long>(n_env));
  o->argv.assign(f.begin() + 16 + static_cast<long>(n_env), f.end());
  return !o->argv.empty() && !o->argv[0].empty();
}

namespace {
struct FdMessage {
  struct iovec iov;
  alignas(struct cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
  struct msghdr msg;
  FdMessage(void* data, size_t size) {
    iov = {data, size};
    std::memset(cbuf, 0, sizeof cbuf);
    std::memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
  }
};
}  // namespace

ssize_t SendWithFd(int sock, std::string_view message, int fd) {
  FdMessage m(const_cast<char*>(message.data()), message.size());
  struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return sendmsg(sock, &m.msg, MSG_NOSIGNAL);
}

ssize_t RecvWithFd(int sock, char* buf, size_t size, int* fd) {
  FdMessage m(buf, size);
  *fd = -1;
  ssize_t n = recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
  if (n < 0) return n;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg); c; c = CMSG_NXTHDR(&m.msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      std::memcpy(fd, CMSG_DATA(c), sizeof *fd);
  return n;
}

}  // namespace weft::auditor
