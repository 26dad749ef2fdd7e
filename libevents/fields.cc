// Lazy field access: simdjson On-Demand, kept in this one translation
// unit so that only processes which decode fields link libsimdjson.
#include <fmt/format.h>
#include <simdjson.h>

#include <charconv>
#include <cstring>

#include "weft/events/event.h"

namespace weft::events {

static_assert(kPadding >= simdjson::SIMDJSON_PADDING,
              "kPadding must cover simdjson's padding");

struct Fields::Impl {
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  bool loaded = false;
  bool indexed = false;  // kIndexed
  bool use_keys = false;  // this event's keys are in "keys"
  // kIndexed: the event's top-level keys, as simdjson compares them (the
  // raw bytes after the opening quote).
  std::vector<simdjson::ondemand::raw_json_string> keys;

  // Starts reading a line: false (and why) if it is not a JSON object.
  bool Iterate(std::string_view line, std::string* err) {
    auto error = parser
                     .iterate(simdjson::padded_string_view(line.data(), line.size(),
                                                           line.size() + kPadding))
                     .get(doc);
    if (error) {
      if (err) *err = simdjson::error_message(error);
      return false;
    }
    simdjson::ondemand::json_type t;
    if (doc.type().get(t) || t != simdjson::ondemand::json_type::object) {
      if (err) *err = "not a JSON object";
      return false;
    }
    return true;
  }

  // Notes the keys, then rewinds. False if the object is malformed further
  // on (the document is then in error: read it again, to walk it as far as
  // it can be read).
  bool Index() {
    keys.clear();
    simdjson::ondemand::object obj;
    if (doc.get_object().get(obj)) return false;
    for (auto field : obj) {
      simdjson::ondemand::raw_json_string key;
      if (field.key().get(key)) return false;
      keys.push_back(key);
    }
    doc.rewind();  // nothing was unescaped yet: no string is overwritten
    return true;
  }

  // Whether a lookup found its value. An absent field, or one of another
  // type, leaves the event readable; any other error (the event is
  // malformed there) ends its reading: On-Demand must not be walked on
  // past one (it would read out of bounds).
  bool Ok(simdjson::error_code e) {
    if (e == simdjson::SUCCESS) return true;
    if (e != simdjson::NO_SUCH_FIELD && e != simdjson::INCORRECT_TYPE) loaded = false;
    return false;
  }

  // As simdjson's unsafe_is_equal (the key's bytes, then its closing quote:
  // the padding after the line makes reading that far safe), with the
  // cheap tests first: most keys differ in their first byte.
  bool HasKey(std::string_view key) const {
    if (key.size() >= kPadding) return true;  // let simdjson look for it
    for (auto k : keys) {
      const char* raw = k.raw();
      if (raw[key.size()] == '"' && (key.empty() || raw[0] == key[0]) &&
          std::memcmp(raw, key.data(), key.size()) == 0)
        return true;
    }
    return false;
  }

  // The object field last looked into (Member): the next look into it
  // goes on from there, instead of finding it again from the top (which
  // walks round the whole event, for each of counts' six fields).
  bool sub_valid = false;  // sub_key, sub_ok and sub are of this event
  std::string sub_key;
  bool sub_ok = false;
  simdjson::ondemand::object sub;

  simdjson::simdjson_result<simdjson::ondemand::value> Member(
      std::string_view object, std::string_view key) {
    if (!sub_valid || sub_key != object) {
      sub_ok = Ok(Find(object).get_object().get(sub));
      sub_key = object;
      sub_valid = true;
    }
    if (!sub_ok) return simdjson::NO_SUCH_FIELD;
    return sub.find_field_unordered(key);
  }

  simdjson::simdjson_result<simdjson::ondemand::value> Find(
      std::string_view key) {
    sub_valid = false;
    if (use_keys && !HasKey(key)) return simdjson::NO_SUCH_FIELD;
    return doc.find_field_unordered(key);
  }
};

Fields::Fields(Lookup lookup) : impl_(std::make_unique<Impl>()) {
  impl_->indexed = lookup == Lookup::kIndexed;
}
Fields::~Fields() = default;

bool Fields::Load(const Event& event, std::string* err) {
  impl_->loaded = false;
  impl_->sub_valid = false;
  impl_->use_keys = false;
  if (!impl_->Iterate(event.line(), err)) return false;
  if (impl_->indexed) {
    impl_->use_keys = impl_->Index();
    if (!impl_->use_keys && !impl_->Iterate(event.line(), err)) return false;
  }
  impl_->loaded = true;
  return true;
}

std::optional<std::string_view> Fields::Str(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  std::string_view s;
  if (!impl_->Ok(impl_->Find(key).get_string().get(s))) return std::nullopt;
  return s;
}

std::optional<int64_t> Fields::Int(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  int64_t v;
  if (!impl_->Ok(impl_->Find(key).get_int64().get(v))) return std::nullopt;
  return v;
}

std::optional<bool> Fields::Bool(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  bool v;
  if (!impl_->Ok(impl_->Find(key).get_bool().get(v))) return std::nullopt;
  return v;
}

std::optional<double> Fields::Double(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  double v;
  if (!impl_->Ok(impl_->Find(key).get_double().get(v))) return std::nullopt;
  return v;
}

bool Fields::StrMap(std::string_view key, std::vector<std::string>* out) {
  out->clear();
  if (!impl_->loaded) return false;
  simdjson::ondemand::object obj;
  if (!impl_->Ok(impl_->Find(key).get_object().get(obj))) return false;
  for (auto field : obj) {
    std::string_view k, v;
    if (!impl_->Ok(field.unescaped_key().get(k))) return false;
    std::string entry(k);
    if (!impl_->Ok(field.value().get_string().get(v))) return false;
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
  if (!impl_->Ok(impl_->Member(object, key).get_int64().get(v)))
    return std::nullopt;
  return v;
}

std::optional<std::string_view> Fields::Str(std::string_view object,
                                            std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  std::string_view s;
  if (!impl_->Ok(impl_->Member(object, key).get_string().get(s)))
    return std::nullopt;
  return s;
}

bool Fields::StrArray(std::string_view key, std::vector<std::string>* out) {
  out->clear();
  if (!impl_->loaded) return false;
  simdjson::ondemand::array arr;
  if (!impl_->Ok(impl_->Find(key).get_array().get(arr))) return false;
  for (auto item : arr) {
    std::string_view s;
    if (!impl_->Ok(item.get_string().get(s))) return false;
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
  if (!impl_->Ok(impl_->Find(key).get_array().get(arr))) return false;
  for (auto item : arr) {
    simdjson::ondemand::object obj;
    if (!impl_->Ok(item.get_object().get(obj))) return false;
    std::vector<std::string> row;
    for (std::string_view column : columns) {
      simdjson::ondemand::value value;
      std::string_view v;
      int64_t n;
      auto e = obj.find_field_unordered(column).get(value);
      if (!e) {
        e = value.get_string().get(v);
        if (!e) {
          row.emplace_back(v);
          continue;
        }
        if (e == simdjson::INCORRECT_TYPE) {
          e = value.get_int64().get(n);
          if (!e) {
            row.push_back(std::to_string(n));
            continue;
          }
        }
      }
      if (!impl_->Ok(e) && !impl_->loaded) return false;  // malformed there
      row.emplace_back();
    }
    rows->push_back(std::move(row));
  }
  return true;
}

std::optional<std::string_view> Fields::Raw(std::string_view key) {
  if (!impl_->loaded) return std::nullopt;
  simdjson::ondemand::value v;
  if (!impl_->Ok(impl_->Find(key).get(v))) return std::nullopt;
  std::string_view raw;
  if (!impl_->Ok(simdjson::to_json_string(v).get(raw))) return std::nullopt;
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
