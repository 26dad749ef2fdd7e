// Lazy field access: simdjson On-Demand, kept in this one translation
// unit so that only processes which decode fields link libsimdjson.
#include <fmt/format.h>
#include <simdjson.h>

#include <charconv>

#include "weft/events/event.h"

namespace weft::events {

static_assert(kPadding >= simdjson::SIMDJSON_PADDING,
              "kPadding must cover simdjson's padding");

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

std::optional<double> Fields::Double(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  double v;
  if (impl_->Find(key).get_double().get(v)) return std::nullopt;
  return v;
}

bool Fields::StrMap(std::string_view key, std::vector<std::string>* out) {
  out->clear();
  if (!impl_->loaded) return false;
  simdjson::ondemand::object obj;
  if (impl_->Find(key).get_object().get(obj)) return false;
  for (auto field : obj) {
    std::string_view k, v;
    if (field.unescaped_key().get(k)) return false;
    std::string entry(k);
    if (field.value().get_string().get(v)) return false;
    entry.push_back('=');
    entry.append(v);
    out->push_back(std::move(entry));
  }
  return true;
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

bool Fields::StrTable(std::string_view key,
                      std::initializer_list<std::string_view> columns,
                      std::vector<std::vector<std::string>>* rows) {
  rows->clear();
  if (!impl_->loaded) return false;
  simdjson::ondemand::array arr;
  if (impl_->Find(key).get_array().get(arr)) return false;
  for (auto item : arr) {
    simdjson::ondemand::object obj;
    if (item.get_object().get(obj)) return false;
    std::vector<std::string> row;
    for (std::string_view column : columns) {
      simdjson::ondemand::value value;
      std::string_view v;
      int64_t n;
      if (obj.find_field_unordered(column).get(value))
        row.emplace_back();
      else if (!value.get_string().get(v))
        row.emplace_back(v);
      else if (!value.get_int64().get(n))
        row.push_back(std::to_string(n));
      else
        row.emplace_back();
    }
    rows->push_back(std::move(row));
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
