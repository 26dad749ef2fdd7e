#include "native.h"

#include <rapidjson/error/en.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <array>

namespace weft::auditor {
namespace {

constexpr std::array<std::string_view, 8> kAllowed = {
    "plan", "assert", "diag", "note", "attachment", "timing", "bail", "deps"};
constexpr std::array<std::string_view, 5> kEnvelope = {"run", "job", "seq",
                                                       "ts", "source"};

// SAX handler: tracks depth and the current top-level key; records the
// few top-level values the auditor counts; refuses envelope keys.
struct Handler
    : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, Handler> {
  NativeEvent* e;
  std::string* err;
  int depth = 0;
  std::string key;

  bool Top() const { return depth == 1; }
  bool Default() { return true; }
  bool StartObject() {
    ++depth;
    return true;
  }
  bool EndObject(rapidjson::SizeType) {
    --depth;
    return true;
  }
  bool StartArray() {
    ++depth;
    return true;
  }
  bool EndArray(rapidjson::SizeType) {
    --depth;
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (!Top()) return true;
    key.assign(s, n);
    for (auto k : kEnvelope) {
      if (key == k) {
        *err = "a test may not set \"" + key + "\": the auditor stamps it";
        return false;
      }
    }
    return true;
  }
  bool Bool(bool b) {
    if (Top() && key == "ok") {
      e->has_ok = true;
      e->ok = b;
    }
    return true;
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (Top() && key == "directive") e->directive.assign(s, n);
    if (Top() && key == "reason" && e->type == "bail") e->reason.assign(s, n);
    return true;
  }
  bool Int64(int64_t v) {
    if (Top() && key == "count") {
      e->has_count = true;
      e->count = v;
    }
    return true;
  }
  bool Int(int v) { return Int64(v); }
  bool Uint(unsigned v) { return Int64(v); }
  bool Uint64(uint64_t v) {
    return Int64(v > INT64_MAX ? INT64_MAX : static_cast<int64_t>(v));
  }
};

}  // namespace

bool ParseNative(std::string_view line, NativeEvent* e, std::string* err) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
    line.remove_suffix(1);
  // {"type":"…" first; JSON whitespace allowed around the punctuation (as
  // Python's json.dumps writes it), and the output is canonical anyway.
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < line.size() &&
           (line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r'))
      ++i;
  };
  auto expect = [&](std::string_view token) {
    skip_ws();
    if (line.substr(i, token.size()) != token) return false;
    i += token.size();
    return true;
  };
  if (!expect("{") || !expect("\"type\"") || !expect(":") || !expect("\"")) {
    *err = "not a native event: a line must be a JSON object with \"type\" first";
    return false;
  }
  size_t close = line.find('"', i);
  if (close == std::string_view::npos) {
    *err = "not a native event: unterminated type";
    return false;
  }
  e->type = line.substr(i, close - i);
  e->rest = line.substr(close + 1);
  bool allowed = false;
  for (auto t : kAllowed) allowed = allowed || e->type == t;
  if (!allowed) {
    *err = "type \"" + std::string(e->type) +
           "\" is not one a test may send (plan, assert, diag, note, "
           "attachment, timing, bail, deps)";
    return false;
  }
  Handler h;
  h.e = e;
  h.err = err;
  rapidjson::Reader reader;
  rapidjson::MemoryStream ms(line.data(), line.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(ms);
  rapidjson::ParseResult ok =
      reader.Parse<rapidjson::kParseValidateEncodingFlag>(in, h);
  if (!ok) {
    if (err->empty())
      *err = std::string("not valid JSON: ") + rapidjson::GetParseError_En(ok.Code()) +
             " at byte " + std::to_string(ok.Offset());
    return false;
  }
  if (e->type == "assert" && !e->has_ok) {
    *err = "an assert needs \"ok\": true or false";
    return false;
  }
  if (e->type == "plan" && (!e->has_count || e->count < 0)) {
    *err = "a plan needs \"count\": a number of assertions";
    return false;
  }
  return true;
}

}  // namespace weft::auditor
