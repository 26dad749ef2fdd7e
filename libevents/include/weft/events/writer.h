// Producing events: RapidJSON's Writer, "type" first, then the envelope.
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/internal/itoa.h>
#include <rapidjson/writer.h>

#include <sys/resource.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "weft/events/pass_through.h"

namespace weft::events {

// A key name written in our code ("duration_us"), checked when compiled:
// nothing in it needs escaping (one that did would not compile).
class KeyName {
 public:
  template <size_t N>
  consteval KeyName(const char (&name)[N]) : data_(name), size_(N - 1) {
    if (name[N - 1] != '\0') throw "not a string literal";
    for (size_t i = 0; i + 1 < N; ++i)
      if (static_cast<unsigned char>(name[i]) < 0x20 || name[i] == '"' || name[i] == '\\')
        throw "a key that needs escaping: pass it as a std::string_view";
  }
  const char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const char* data_;
  size_t size_;
};

// RapidJSON's Writer, and keys written whole: a name such as "duration_us"
// needs no escaping, and copying it beats RapidJSON's byte-by-byte
// escaping (a third of the time of a 10,000-job JSON report); one known
// when compiled is copied with no look at its bytes at all.
class JsonWriter : public rapidjson::Writer<rapidjson::StringBuffer> {
 public:
  using Writer::Writer;
  void PlainKey(std::string_view key) {
    for (char c : key)
      if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') {
        Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
        return;
      }
    Whole(key.data(), key.size());
  }
  void NameKey(KeyName key) { Whole(key.data(), key.size()); }
  // Opens an object whose first members are JSON text written by the
  // caller, "head" then "tail" (`"a":1,"b":` and `2`, together holding
  // "values" keys and values): on from here, the writer goes on as if it
  // had written them itself.
  void StartObjectWith(std::string_view head, std::string_view tail, size_t values) {
    StartObject();
    for (std::string_view part : {head, tail})
      if (!part.empty()) std::memcpy(os_->Push(part.size()), part.data(), part.size());
    level_stack_.template Top<Level>()->valueCount = values;
  }
  // A string value, most often plain (an event's type, an assertion's
  // description): the same look and copy (to RapidJSON a key is a string;
  // bytes from 0x80 up are copied as they are either way).
  void PlainString(std::string_view s) { PlainKey(s); }

 private:
  void Whole(const char* key, size_t n) {
    Prefix(rapidjson::kStringType);
    char* p = os_->Push(n + 2);
    p[0] = '"';
    if (n) std::memcpy(p + 1, key, n);  // (an empty view's data may be null)
    p[n + 1] = '"';
    EndValue(true);
  }
};

// Accumulates whole event lines into one batch; Flush() hands the batch to
// one write() (looping only on short writes), so lines never tear and never
// interleave with another producer's.
class EventWriter {
 public:
  // "run" may be empty (then omitted); job < 0 means a run-level producer.
  EventWriter(std::string run, int64_t job);
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void set_run(std::string run) {
    run_ = std::move(run);
    head_job_ = -3;
  }
  // While >= 0, the "ts" of events begun without one: the moment a batch
  // of lines was read (one clock read per read, not per event).
  void set_batch_ts(int64_t ts_us) { batch_ts_ = ts_us; }
  int64_t batch_ts() const { return batch_ts_; }
  const std::string& run() const { return run_; }
  int64_t job() const { return job_; }
  uint64_t seq() const { return seq_; }

  // Starts an event: {"type":…,"run":…,"job":…,"seq":…,"ts":… and returns
  // the writer for the type's own fields. Finish with End().
  // "job" overrides this writer's job id for one event (a runner writing
  // on behalf of a job whose auditor died).
  JsonWriter& Begin(std::string_view type, int64_t ts_us = -1,
                    int64_t job = -2);
  void End();

  // Ends an event begun with Begin() with bytes another producer wrote:
  // "rest" is the remainder of its JSON object (",…}" or "}"), spliced in
  // as text, not re-encoded. The caller has validated it.
  void EndRaw(std::string_view rest);

  // Appends a line another producer wrote, unchanged, plus '\n'. With a
  // pass-through set, a line read through it is only noted there, and
  // Flush() splices it from the input in its place.
  void AppendRaw(std::string_view line) {
    if (!pass_ || !pass_->Note(buf_.GetSize(), line, false)) Copy(line);
  }
  // Lines read through "pass" (which must outlive this writer) are passed
  // on by it: then Flush() and Clear() are the ways out of a batch
  // (batch(), FlushPrefix() and Insert() see only the writer's own bytes).
  void set_pass_through(PassThrough* pass) { pass_ = pass; }

  // The hello event that starts every stream.
  void Hello(std::string_view producer);

  std::string_view batch() const {
    return {buf_.GetString(), buf_.GetSize()};
  }
  bool empty() const { return buf_.GetSize() == 0 && !(pass_ && pass_->pending()); }
  size_t size() const { return buf_.GetSize(); }
  void Clear() {
    buf_.Clear();
    if (pass_) pass_->Drop();
  }
  // Writes the batch to fd and clears it. false with errno on failure.
  bool Flush(int fd);
  // Writes the batch's first n bytes (whole lines) to fd and keeps the
  // rest, which moves to the front.
  bool FlushPrefix(int fd, size_t n);
  // Inserts bytes at "pos" of the batch (inside an event already ended:
  // a field added to it once known, such as an assertion's YAML block).
  void Insert(size_t pos, std::string_view bytes);

 private:
  void Copy(std::string_view line);
  std::string run_;
  // The envelope up to "seq"'s value for the last type and job begun
  // (`"type":"assert","run":"…","job":3,"seq":`): most events of a stream
  // are of the type of the one before.
  std::string head_, head_type_;
  int64_t head_job_ = -3;
  size_t head_values_ = 0;
  int64_t batch_ts_ = -1;
  int64_t job_;
  uint64_t seq_ = 0;
  rapidjson::StringBuffer buf_;
  JsonWriter w_;
  PassThrough* pass_ = nullptr;
};

// Writes "key": bytes as a JSON string. Bytes that are not valid UTF-8 are
// written as "key" with U+FFFD replacements plus "key_b64" holding the
// exact bytes (base64), so nothing is lost.
void WriteText(JsonWriter& w, std::string_view key, std::string_view bytes);
// A string value (array element) from bytes that should be text: invalid
// UTF-8 is replaced with U+FFFD (use WriteText where bytes must survive).
void TextValue(JsonWriter& w, std::string_view bytes);
// "key": a name in our code (a literal: copied out, checked when
// compiled), or any other text (looked at for what needs escaping).
inline void Key(JsonWriter& w, KeyName key) { w.NameKey(key); }
template <class Text>
  requires(std::is_convertible_v<const Text&, std::string_view> && !std::is_array_v<Text>)
void Key(JsonWriter& w, const Text& key) {
  w.PlainKey(key);
}
void String(JsonWriter& w, std::string_view s);

// "key": {"user_us":…,"sys_us":…,"max_rss_kib":…} from a struct rusage.
void WriteUsage(JsonWriter& w, std::string_view key, const struct rusage& usage);

// Whether "bytes" are well-formed UTF-8. Written here, not taken from
// simdjson, so processes that only write events (the auditor, started once
// per test) need not load libsimdjson.so and libstdc++.so at start-up.
bool ValidUtf8(std::string_view bytes);

// Base64 (RFC 4648, padded), for WriteText and its readers.
std::string Base64Encode(std::string_view bytes);
bool Base64Decode(std::string_view text, std::string* out);

// Writes all of "data" to fd, retrying short writes and EINTR.
bool WriteAll(int fd, std::string_view data);

}  // namespace weft::events
