#include "weft/events/event.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <simdjson.h>
#include <time.h>

#include <charconv>
#include <fmt/format.h>

namespace weft::events {

static_assert(kPadding >= simdjson::SIMDJSON_PADDING,
              "kPadding must cover simdjson's padding");

namespace {
constexpr std::string_view kTypePrefix = "{\"type\":\"";
}  // namespace

std::string_view TypeOf(std::string_view line) {
  if (line.size() < kTypePrefix.size() + 1 ||
      line.substr(0, kTypePrefix.size()) != kTypePrefix)
    return {};
  std::string_view rest = line.substr(kTypePrefix.size());
  // Type names are plain ASCII words: no escapes to worry about.
  for (size_t i = 0; i < rest.size(); ++i) {
    char c = rest[i];
    if (c == '"') return rest.substr(0, i);
    if (c == '\\' || static_cast<unsigned char>(c) < 0x20) return {};
  }
  return {};
}

bool LooksLikeEvent(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
    line.remove_suffix(1);
  return !line.empty() && line.back() == '}' && !TypeOf(line).empty();
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

struct Fields::Impl {
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  bool loaded = false;

  simdjson::simdjson_result<simdjson::ondemand::value> Find(
      std::string_view key) {
    return doc.find_field_unordered(key);
  }
};

Fields::Fields() : impl_(std::make_unique<Impl>()) {}
Fields::~Fields() = default;

bool Fields::Load(const Event& event, std::string* err) {
  impl_->loaded = false;
  std::string_view line = event.line();
  auto error = impl_->parser
                   .iterate(simdjson::padded_string_view(
                       line.data(), line.size(), line.size() + kPadding))
                   .get(impl_->doc);
  if (error) {
    if (err) *err = simdjson::error_message(error);
    return false;
  }
  simdjson::ondemand::json_type t;
  if (impl_->doc.type().get(t) || t != simdjson::ondemand::json_type::object) {
    if (err) *err = "not a JSON object";
    return false;
  }
  impl_->loaded = true;
  return true;
}

std::optional<std::string_view> Fields::Str(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  std::string_view s;
  if (impl_->Find(key).get_string().get(s)) return std::nullopt;
  return s;
}

std::optional<int64_t> Fields::Int(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  int64_t v;
  if (impl_->Find(key).get_int64().get(v)) return std::nullopt;
  return v;
}

std::optional<bool> Fields::Bool(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  bool v;
  if (impl_->Find(key).get_bool().get(v)) return std::nullopt;
  return v;
}

std::optional<int64_t> Fields::Int(std::string_view object,
                                   std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  int64_t v;
  if (impl_->Find(object).find_field_unordered(key).get_int64().get(v))
    return std::nullopt;
  return v;
}

std::optional<std::string_view> Fields::Str(std::string_view object,
                                            std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  std::string_view s;
  if (impl_->Find(object).find_field_unordered(key).get_string().get(s))
    return std::nullopt;
  return s;
}

bool Fields::StrArray(std::string_view key, std::vector<std::string>* out) {
  out->clear();
  if (!impl_->loaded) return false;
  simdjson::ondemand::array arr;
  if (impl_->Find(key).get_array().get(arr)) return false;
  for (auto item : arr) {
    std::string_view s;
    if (item.get_string().get(s)) return false;
    out->emplace_back(s);
  }
  return true;
}

std::optional<std::string_view> Fields::Raw(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  simdjson::ondemand::value v;
  if (impl_->Find(key).get(v)) return std::nullopt;
  std::string_view raw;
  if (simdjson::to_json_string(v).get(raw)) return std::nullopt;
  return raw;
}

bool CheckHello(Fields& hello, std::string* err) {
  auto schema = hello.Str("schema");
  if (!schema) {
    *err = "stream's hello event names no schema version";
    return false;
  }
  int major = -1;
  std::string_view s = *schema;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), major);
  if (ec != std::errc() || (p != s.data() + s.size() && *p != '.')) {
    *err = fmt::format("unreadable schema version \"{}\"", s);
    return false;
  }
  if (major != kSchemaMajor) {
    *err = fmt::format(
        "stream uses event schema {} but this weft reads schema {} "
        "(major versions must match)",
        s, kSchemaVersion);
    return false;
  }
  return true;
}

}  // namespace weft::events
