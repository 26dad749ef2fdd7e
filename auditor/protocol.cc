#include "protocol.h"

#include <charconv>
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
  add(std::to_string(o.timeout_s));
  add(std::to_string(o.kill_grace_s));
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
  if (f.size() < 7 || f[0] != "J") return false;
  o->run = std::string(f[1]);
  auto [p, ec] = std::from_chars(f[2].data(), f[2].data() + f[2].size(), o->job);
  if (ec != std::errc() || p != f[2].data() + f[2].size()) return false;
  o->name = std::string(f[3]);
  o->timeout_s = std::strtod(std::string(f[4]).c_str(), nullptr);
  o->kill_grace_s = std::strtod(std::string(f[5]).c_str(), nullptr);
  o->argv.assign(f.begin() + 6, f.end());
  return !o->argv.empty() && !o->argv[0].empty();
}

}  // namespace weft::auditor
