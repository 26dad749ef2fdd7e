#include "yaml_json.h"

#include <rapidjson/stringbuffer.h>
#include <weft/events/writer.h>
#include <yaml-cpp/yaml.h>

namespace weft::auditor {
namespace {

constexpr int kMaxDepth = 64;
constexpr int kMaxNodes = 10000;

bool Convert(const YAML::Node& node, events::JsonWriter& w, int depth,
             int* nodes, std::string* err) {
  if (++*nodes > kMaxNodes || depth > kMaxDepth) {
    *err = "YAML block too big or too deep";
    return false;
  }
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      w.Null();
      return true;
    case YAML::NodeType::Scalar:
      events::TextValue(w, node.Scalar());
      return true;
    case YAML::NodeType::Sequence:
      w.StartArray();
      for (const auto& item : node)
        if (!Convert(item, w, depth + 1, nodes, err)) return false;
      w.EndArray();
      return true;
    case YAML::NodeType::Map:
      w.StartObject();
      for (const auto& kv : node) {
        std::string key =
            kv.first.IsScalar() ? kv.first.Scalar() : YAML::Dump(kv.first);
        events::TextValue(w, key);  // a key is written like a string value
        if (!Convert(kv.second, w, depth + 1, nodes, err)) return false;
      }
      w.EndObject();
      return true;
  }
  return true;
}

}  // namespace

bool YamlToJson(std::string_view text, std::string* json, std::string* err) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    *err = std::string("malformed YAML: ") + e.msg;
    return false;
  } catch (const std::exception& e) {
    *err = std::string("malformed YAML: ") + e.what();
    return false;
  }
  rapidjson::StringBuffer sb;
  events::JsonWriter scratch(sb);
  int nodes = 0;
  try {
    if (!Convert(root, scratch, 0, &nodes, err)) return false;
  } catch (const std::exception& e) {
    *err = std::string("malformed YAML: ") + e.what();
    return false;
  }
  json->assign(sb.GetString(), sb.GetSize());
  return true;
}

}  // namespace weft::auditor
