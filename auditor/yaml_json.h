// TAP's YAML diagnostic blocks as JSON, with yaml-cpp (kept in its own
// translation unit: a heavy header and exceptions stay here).
#pragma once

#include <string>
#include <string_view>

namespace weft::auditor {

// Parses "text" as YAML into one JSON value in *json: mappings as objects
// (keys as strings), sequences as arrays, scalars as strings, empty and ~
// as null. Bounded (64 levels, 10,000 nodes: aliases can multiply a small
// text). false with *err when the text is not YAML or too big.
bool YamlToJson(std::string_view text, std::string* json, std::string* err);

}  // namespace weft::auditor
