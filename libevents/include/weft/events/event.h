// weft::events — the event model every weft process shares.
//
// An event is the raw bytes of one JSONL line. Its type is read without
// parsing; its fields are decoded on demand (simdjson On-Demand, behind
// Fields); dirty() gives a mutable RapidJSON copy. See docs/events.md.
#pragma once

#include <rapidjson/document.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace weft::events {

// The schema this code reads and writes. Readers refuse another major.
inline constexpr int kSchemaMajor = 1;
inline constexpr int kSchemaMinor = 0;
inline constexpr std::string_view kSchemaVersion = "1.0";

// Bytes that must be readable after the end of a line handed to Fields
// (simdjson's SIMDJSON_PADDING; checked in event.cc).
inline constexpr size_t kPadding = 64;

// How every event line starts: its type comes first, right after this.
inline constexpr std::string_view kTypePrefix = "{\"type\":\"";

// The type of an event line, read from its leading {"type":"…" without
// parsing; empty when the line does not start that way (not a weft event).
std::string_view TypeOf(std::string_view line);

// Cheap structural check used by every reader: starts with {"type":"…",
// ends with '}'. Full validation happens where fields are decoded.
bool LooksLikeEvent(std::string_view line);

// The envelope's job id, read from the text: the first ,"job": of a line
// is the envelope's (a JSON string cannot hold an unescaped quote).
// Empty when there is none or it is not a plain integer.
std::optional<int64_t> JobIdOf(std::string_view line);

// Whether "line" (an assert) is a passing test point as the auditor writes
// TAP's: canonical ("source":"tap", no optional whitespace, a YAML block's
// values all strings), so its top-level "ok":true is known from the text
// alone and the line need not be decoded. false only means "decode it".
bool PassingTapAssert(std::string_view line);

// Microseconds since the epoch (CLOCK_REALTIME).
int64_t NowMicros();

class Event {
 public:
  // "line" excludes the '\n'. Its memory must outlive the Event; Fields
  // needs kPadding readable bytes after it (LineReader guarantees this).
  explicit Event(std::string_view line) : line_(line) {}

  std::string_view line() const { return line_; }
  std::string_view type() const { return TypeOf(line_); }

  // A mutable copy; parse errors leave doc.HasParseError() true.
  rapidjson::Document dirty() const;

 private:
  std::string_view line_;
};

// Serialises a RapidJSON value as one line (no '\n'), "type" first if the
// value has one.
std::string Serialize(const rapidjson::Value& value);

// Lazy field access with simdjson On-Demand. One Fields per reader, reused
// across events: Load() re-points it at a new line; string views it returns
// are valid until the next Load().
//
// A lookup walks the event's fields from where the last one stopped, so
// fields read in the order they are written cost one pass in all; but a
// field that is absent costs a whole pass of its own. A reader that asks
// for many fields that are often absent (a renderer's model reads ~25 of a
// job.end, half of them rare) uses kIndexed: Load() then notes the event's
// keys in one pass, and an absent field costs a look along that list.
class Fields {
 public:
  enum class Lookup { kWalk, kIndexed };
  explicit Fields(Lookup lookup = Lookup::kWalk);
  ~Fields();
  Fields(const Fields&) = delete;
  Fields& operator=(const Fields&) = delete;

  // "event" must outlive the use of this Fields until the next Load().
  bool Load(const Event& event, std::string* err = nullptr);

  std::optional<std::string_view> Str(std::string_view key);
  std::optional<int64_t> Int(std::string_view key);
  std::optional<bool> Bool(std::string_view key);
  // Any JSON number, as a double.
  std::optional<double> Double(std::string_view key);
  // A field of an object field: Int("exit", "code").
  std::optional<int64_t> Int(std::string_view object, std::string_view key);
  std::optional<std::string_view> Str(std::string_view object,
                                      std::string_view key);
  // An array of strings; false if absent or not such an array.
  bool StrArray(std::string_view key, std::vector<std::string>* out);
  // An array of objects as a table: for each object, the values of
  // "columns" in order: strings, integers as their digits, empty when
  // absent (or of another type). False if not such an array.
  bool StrTable(std::string_view key,
                std::initializer_list<std::string_view> columns,
                std::vector<std::vector<std::string>>* rows);
  // An object whose values are all strings, as KEY=VALUE strings in order;
  // false if absent or not such an object.
  bool StrMap(std::string_view key, std::vector<std::string>* out);
  // The raw JSON text of a field's value (object, array, anything).
  std::optional<std::string_view> Raw(std::string_view key);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Checks a hello event's schema: false with a message naming both versions
// when the major version is not ours.
bool CheckHello(Fields& hello, std::string* err);

}  // namespace weft::events
