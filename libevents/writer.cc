#include "weft/events/writer.h"

#include <errno.h>
#include <unistd.h>

#include <cstring>

#include "weft/events/event.h"

namespace weft::events {

EventWriter::EventWriter(std::string run, int64_t job)
    : run_(std::move(run)), job_(job), w_(buf_) {}

JsonWriter& EventWriter::Begin(std::string_view type, int64_t ts_us,
                               int64_t job) {
  if (job == -2) job = job_;
  if (job != head_job_ || type != head_type_) {
    // The envelope's fixed part, written once for a run of events of
    // this type and job (by a writer of its own: the type escaped if
    // need be, the run id too).
    rapidjson::StringBuffer sb;
    JsonWriter w(sb);
    w.StartObject();
    w.NameKey("type");
    w.PlainString(type);
    head_values_ = 2;
    if (!run_.empty()) {
      w.NameKey("run");
      w.String(run_.data(), static_cast<rapidjson::SizeType>(run_.size()));
      head_values_ += 2;
    }
    if (job >= 0) {
      w.NameKey("job");
      w.Int64(job);
      head_values_ += 2;
    }
    w.NameKey("seq");
    head_values_ += 1;
    head_.assign(sb.GetString() + 1, sb.GetSize() - 1);  // without '{'
    head_.push_back(':');
    head_type_.assign(type);
    head_job_ = job;
  }
  // Then seq's value and "ts", as digits after it (at most 46 bytes).
  int64_t ts = ts_us >= 0 ? ts_us : batch_ts_ >= 0 ? batch_ts_ : NowMicros();
  char tail[48];
  char* p = rapidjson::internal::u64toa(seq_++, tail);
  std::memcpy(p, ",\"ts\":", 6);
  p = rapidjson::internal::i64toa(ts, p + 6);
  w_.Reset(buf_);
  w_.StartObjectWith(head_, std::string_view(tail, static_cast<size_t>(p - tail)),
                     head_values_ + 3);
  return w_;
}

void EventWriter::End() {
  w_.EndObject();
  buf_.Put('\n');
}

void EventWriter::EndRaw(std::string_view rest) {
  // The Writer still thinks the object is open; Begin() resets it.
  Copy(rest);
}

void EventWriter::Copy(std::string_view line) {
  char* p = buf_.Push(line.size() + 1);
  std::memcpy(p, line.data(), line.size());
  p[line.size()] = '\n';
}

void EventWriter::Hello(std::string_view producer) {
  JsonWriter& w = Begin("hello");
  Key(w, "schema");
  String(w, kSchemaVersion);
  Key(w, "producer");
  String(w, producer);
  Key(w, "version");
  String(w, WEFT_VERSION);
  End();
}

bool EventWriter::Flush(int fd) {
  bool ok = pass_ && pass_->pending() ? pass_->Write(batch()) : WriteAll(fd, batch());
  Clear();
  return ok;
}

bool EventWriter::FlushPrefix(int fd, size_t n) {
  if (n >= size()) return Flush(fd);
  bool ok = WriteAll(fd, batch().substr(0, n));
  std::string rest(batch().substr(n));
  Clear();
  std::memcpy(buf_.Push(rest.size()), rest.data(), rest.size());
  return ok;
}

void EventWriter::Insert(size_t pos, std::string_view bytes) {
  if (pos > size()) pos = size();
  std::string tail(batch().substr(pos));
  buf_.Pop(tail.size());
  std::memcpy(buf_.Push(bytes.size()), bytes.data(), bytes.size());
  std::memcpy(buf_.Push(tail.size()), tail.data(), tail.size());
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        // A non-blocking fd that is full: wait until it drains.
        fd_set set;
        FD_ZERO(&set);
        FD_SET(fd, &set);
        select(fd + 1, nullptr, &set, nullptr, nullptr);
        continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}


void String(JsonWriter& w, std::string_view s) {
  // Most text has nothing to escape: looked at, then copied out whole
  // (RapidJSON escapes byte by byte, at several times the cost).
  w.PlainString(s);
}

namespace {

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong
// forms, no surrogates, nothing past U+10FFFF), or 0 if there is none.
size_t SequenceAt(const unsigned char* s, size_t n, size_t i) {
  unsigned char c = s[i];
  if (c < 0x80) return 1;
  size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + len > n) return 0;
  uint32_t cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) {
    if ((s[i + k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i + k] & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
      (len == 4 && cp < 0x10000) || (cp >= 0xD800 && cp <= 0xDFFF) ||
      cp > 0x10FFFF)
    return 0;
  return len;
}

// Replaces each invalid byte with U+FFFD.
std::string Lossy(std::string_view in) {
  std::string out;
  out.reserve(in.size() + 16);
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  for (size_t i = 0; i < in.size();) {
    if (size_t len = SequenceAt(s, in.size(), i)) {
      out.append(in.data() + i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

constexpr char kB64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

bool ValidUtf8(std::string_view bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0;
  while (i < n) {
    // ASCII fast path, eight bytes at a time: most test output is ASCII.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, s + i, 8);
      if (word & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    size_t len = SequenceAt(s, n, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

void WriteText(JsonWriter& w, std::string_view key, std::string_view bytes) {
  Key(w, key);
  if (ValidUtf8(bytes)) {
    String(w, bytes);
    return;
  }
  String(w, Lossy(bytes));
  std::string b64_key(key);
  b64_key += "_b64";
  Key(w, b64_key);
  String(w, Base64Encode(bytes));
}

void TextValue(JsonWriter& w, std::string_view bytes) {
  if (ValidUtf8(bytes))
    String(w, bytes);
  else
    String(w, Lossy(bytes));
}

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t i = 0, n = bytes.size();
  for (; i + 2 < n; i += 3) {
    uint32_t v = (s[i] << 16) | (s[i + 1] << 8) | s[i + 2];
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i < n) {
    uint32_t v = s[i] << 16;
    if (i + 1 < n) v |= s[i + 1] << 8;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < n ? kB64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool Base64Decode(std::string_view text, std::string* out) {
  out->clear();
  if (text.size() % 4 != 0) return false;
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  for (size_t i = 0; i < text.size(); i += 4) {
    int a = val(text[i]), b = val(text[i + 1]);
    bool last = i + 4 == text.size();
    int c = (last && text[i + 2] == '=') ? -2 : val(text[i + 2]);
    int d = (last && text[i + 3] == '=') ? -2 : val(text[i + 3]);
    if (a < 0 || b < 0 || c == -1 || d == -1 || (c == -2 && d != -2))
      return false;
    out->push_back(static_cast<char>((a << 2) | (b >> 4)));
    if (c >= 0) out->push_back(static_cast<char>(((b & 15) << 4) | (c >> 2)));
    if (d >= 0) out->push_back(static_cast<char>(((c & 3) << 6) | d));
  }
  return true;
}

void WriteUsage(JsonWriter& w, std::string_view key, const struct rusage& usage) {
  auto us = [](const struct timeval& tv) {
    return static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
  };
  Key(w, key);
  w.StartObject();
  Key(w, "user_us");
  w.Int64(us(usage.ru_utime));
  Key(w, "sys_us");
  w.Int64(us(usage.ru_stime));
  Key(w, "max_rss_kib");
  w.Int64(usage.ru_maxrss);
  w.EndObject();
}

}  // namespace weft::events
