#include "weft/events/event.h"

#include <charconv>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <string.h>
#include <time.h>


namespace weft::events {

std::string_view TypeOf(std::string_view line) {
  // Every line of a stream comes here: a fixed-size compare (inlined, no
  // call) for the prefix, then the name up to its quote.
  constexpr size_t n = kTypePrefix.size();
  if (line.size() < n + 1 || memcmp(line.data(), kTypePrefix.data(), n) != 0) return {};
  const char* name = line.data() + n;
  const char* end = line.data() + line.size();
  // Type names are plain ASCII words: no escapes to worry about.
  for (const char* p = name; p < end; ++p) {
    char c = *p;
    if (c == '"') return std::string_view(name, static_cast<size_t>(p - name));
    if (c == '\\' || static_cast<unsigned char>(c) < 0x20) return {};
  }
  return {};
}

bool LooksLikeEvent(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
    line.remove_suffix(1);
  return !line.empty() && line.back() == '}' && !TypeOf(line).empty();
}

std::optional<int64_t> JobIdOf(std::string_view line) {
  constexpr std::string_view kKey = ",\"job\":";
  size_t at = line.find(kKey);
  if (at == std::string_view::npos) return std::nullopt;
  int64_t v = 0;
  const char* p = line.data() + at + kKey.size();
  const char* end = line.data() + line.size();
  auto [q, ec] = std::from_chars(p, end, v);
  if (ec != std::errc() || q == end || (*q != ',' && *q != '}')) return std::nullopt;
  return v;
}

bool PassingTapAssert(std::string_view line) {
  return line.find(",\"ok\":true,") != std::string_view::npos &&
         (line.ends_with(",\"source\":\"tap\"}") ||  // top level: no scan
          line.find(",\"source\":\"tap\"") != std::string_view::npos);
}

int64_t NowMicros() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

rapidjson::Document Event::dirty() const {
  rapidjson::Document doc;
  doc.Parse(line_.data(), line_.size());
  return doc;
}

std::string Serialize(const rapidjson::Value& value) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  if (value.IsObject() && value.HasMember("type")) {
    // RapidJSON keeps member order; make sure "type" leads.
    w.StartObject();
    w.Key("type");
    value["type"].Accept(w);
    for (auto& m : value.GetObject()) {
      if (m.name == "type") continue;
      m.name.Accept(w);
      m.value.Accept(w);
    }
    w.EndObject();
  } else {
    value.Accept(w);
  }
  return std::string(sb.GetString(), sb.GetSize());
}

}  // namespace weft::events
