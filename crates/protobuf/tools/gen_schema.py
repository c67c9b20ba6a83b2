#!/usr/bin/env python3
"""Generates crates/protobuf/src/schema.json, the message table the codec runs on.

Sources (read, never copied into the tree):
  * the `k8s-pb` crate (prost structs generated from the Kubernetes .proto files): message names,
    field tags, wire kinds, repeated/map shapes, message types of fields;
  * the Go API types at the matching release (github.com/kubernetes/api and
    github.com/kubernetes/apimachinery, given as git directories: a bare repository or a work
    tree's .git; k8s-pb 0.9 is Kubernetes 1.35, so tag v0.35.x): the exact
    upstream type names, each field's JSON name, whether the field is a Go pointer, whether its
    JSON tag has `omitempty`, and whether it is inlined (`json:",inline"`).

Usage:
  tools/gen_schema.py K8S_PB_SRC API_GIT API_REF APIMACHINERY_GIT APIMACHINERY_REF > src/schema.json
e.g.
  tools/gen_schema.py ~/.cargo/registry/src/*/k8s-pb-0.9.0/src \\
      /path/kubernetes-api.git v0.35.7 /path/apimachinery.git v0.35.7 > src/schema.json

Output: {"<definition name>": {"fields": [[tag, json, kind, type, mode, flags], ...]}
          or {"list": "<element Go type>"} for Go named slices such as `type Verbs []string`}
  kind:  string | bytes | bool | int32 | int64 | double | message | map
  type:  full message name (message), "string" | "bytes" | "<message>" (map value), else ""
  mode:  "o" single, "r" repeated, "m" map
  flags: "z" zero value means unset (Go non-pointer field with omitempty),
         "i" inlined into the parent JSON object, "g" json name taken from the Go tag
"""
import json
import os
import re
import subprocess
import sys

# Included: every built-in group's v1, these later stable versions, and the machinery.
LATER_STABLE = {("autoscaling", "v2"), ("apidiscovery", "v2")}
MACHINERY = [
    "apimachinery.pkg.apis.meta.v1",
    "apimachinery.pkg.runtime",
    "apimachinery.pkg.util.intstr",
    "apimachinery.pkg.api.resource",
]


def included(module):
    if module in MACHINERY:
        return True
    parts = module.split(".")
    if len(parts) != 3 or parts[0] != "api":
        return False
    return parts[2] == "v1" or (parts[1], parts[2]) in LATER_STABLE


def definition_prefix(module):
    if module.startswith("apiextensions_apiserver."):
        return "io.k8s.apiextensions-apiserver." + module.split(".", 1)[1]
    return "io.k8s." + module


# ---------------------------------------------------------------- k8s-pb parsing

PROST = re.compile(r"#\[prost\((.*)\)\]\s*$")
STRUCT = re.compile(r"^pub struct (\w+) \{")


def rust_files(root):
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f == "mod.rs":
                rel = os.path.relpath(dirpath, root)
                if rel != ".":
                    yield rel.replace(os.sep, "."), os.path.join(dirpath, f)


def resolve_type(module, path):
    """`super::super::x::Y` seen from `module` -> (module, name)."""
    path = path.strip()
    segs = [s for s in path.split("::") if s]
    if segs and segs[0] in ("prost", "core"):
        return None
    mod = module.split(".")
    while segs and segs[0] == "super":
        mod = mod[:-1]
        segs = segs[1:]
    return ".".join(mod + segs[:-1]), segs[-1]


def inner_type(ty):
    """The message path inside Option<..>/Vec<..>/Box<..>, or the BTreeMap value."""
    ty = re.sub(r"\s+", "", ty).replace(",>", ">")
    m = re.match(r"::prost::alloc::collections::BTreeMap<::prost::alloc::string::String,(.*)>$", ty)
    if m:
        ty = m.group(1)
    changed = True
    while changed:
        changed = False
        for wrap in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<"):
            if ty.startswith(wrap) and ty.endswith(">"):
                ty = ty[len(wrap):-1]
                changed = True
    return ty


def parse_attr(attr):
    out = {}
    parts = [p.strip() for p in attr.split(",")]
    # btree_map = "string, string" contains a comma inside quotes
    joined = []
    buf = None
    for p in parts:
        if buf is not None:
            buf += "," + p
            if p.endswith('"'):
                joined.append(buf)
                buf = None
        elif p.count('"') == 1:
            buf = p
        else:
            joined.append(p)
    for p in joined:
        if "=" in p:
            k, v = p.split("=", 1)
            out[k.strip()] = v.strip().strip('"')
        else:
            out[p] = True
    return out


def parse_k8s_pb(root):
    messages = {}  # (module, rust name) -> list of fields
    for module, path in rust_files(root):
        lines = open(path, encoding="utf-8").read().split("\n")
        current = None
        i = 0
        while i < len(lines):
            line = lines[i]
            m = STRUCT.match(line)
            if m:
                current = (module, m.group(1))
                messages[current] = []
            elif line.startswith("}"):
                current = None
            else:
                pm = PROST.search(line)
                if pm and current:
                    attr = parse_attr(pm.group(1))
                    decl = ""
                    i += 1
                    while True:
                        decl += lines[i].strip() + " "
                        if decl.rstrip().endswith(",") and decl.count("<") == decl.count(">"):
                            break
                        i += 1
                    name, ty = decl.strip().rstrip(",").split(":", 1)
                    name = name.replace("pub ", "").strip().replace("r#", "")
                    messages[current].append(field_from(module, attr, name, ty))
            i += 1
    return messages


SCALARS = {"string", "bytes", "bool", "int32", "int64", "double"}


def field_from(module, attr, name, ty):
    tag = int(attr["tag"])
    if "btree_map" in attr:
        key, value = [s.strip() for s in attr["btree_map"].split(",")]
        assert key == "string", attr
        vtype = value
        if value == "message":
            vtype = resolve_type(module, inner_type(ty))
        return {"rust": name, "tag": tag, "kind": "map", "type": vtype, "mode": "m"}
    kind = next(k for k in ("message",) + tuple(SCALARS) if k in attr)
    mode = "r" if "repeated" in attr else "o"
    t = resolve_type(module, inner_type(ty)) if kind == "message" else ""
    return {"rust": name, "tag": tag, "kind": kind, "type": t, "mode": mode}


# ---------------------------------------------------------------- Go parsing

GO_STRUCT = re.compile(r"^type (\w+) struct \{")
GO_SLICE = re.compile(r"^type (\w+) \[\](\w+)\s*$")


def git_files(repo, ref, prefix):
    out = subprocess.run(["git", "--git-dir", repo, "ls-tree", "-r", "--name-only", ref, prefix],
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.split("\n") if p.endswith(".go") and not p.endswith("_test.go")
            and not p.endswith("generated.pb.go") and "zz_generated" not in p]


def git_show(repo, ref, path):
    return subprocess.run(["git", "--git-dir", repo, "show", f"{ref}:{path}"],
                          capture_output=True, text=True, check=True).stdout


def parse_go_package(repo, ref, prefix):
    """Structs of one Go package: name -> {tag: info}; and named slices: name -> elem."""
    structs, slices = {}, {}
    for path in git_files(repo, ref, prefix):
        if os.path.dirname(path) != prefix.rstrip("/"):
            continue
        current = None
        for line in git_show(repo, ref, path).split("\n"):
            m = GO_STRUCT.match(line)
            if m:
                current = structs.setdefault(m.group(1), {})
                continue
            m = GO_SLICE.match(line)
            if m:
                slices[m.group(1)] = m.group(2)
            if line.startswith("}"):
                current = None
                continue
            if current is None or "protobuf:\"" not in line or "`" not in line:
                continue
            decl, tags = line.split("`", 1)
            toks = decl.split()
            gotype = toks[1] if len(toks) >= 2 else toks[0]
            js = re.search(r'json:"([^"]*)"', tags)
            pb = re.search(r'protobuf:"([^"]*)"', tags)
            if not pb:
                continue
            pbparts = pb.group(1).split(",")
            if len(pbparts) < 2 or not pbparts[1].isdigit():
                continue
            tag = int(pbparts[1])
            jparts = js.group(1).split(",") if js else [""]
            current[tag] = {
                "json": jparts[0],
                "omitempty": "omitempty" in jparts[1:],
                "inline": "inline" in jparts[1:],
                "pointer": gotype.startswith("*"),
                "container": gotype.startswith("[]") or gotype.startswith("map["),
            }
    return structs, slices


def go_location(module):
    """k8s-pb module -> (which repo, package dir)."""
    if module.startswith("api."):
        return "api", module[len("api."):].replace(".", "/")
    if module.startswith("apimachinery."):
        return "apimachinery", module[len("apimachinery."):].replace(".", "/")
    return None, None


# ---------------------------------------------------------------- output

def lower_camel(rust):
    head, *rest = rust.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def main():
    pb_root, api_git, api_ref, mach_git, mach_ref = sys.argv[1:6]
    repos = {"api": (api_git, api_ref), "apimachinery": (mach_git, mach_ref)}
    messages = parse_k8s_pb(pb_root)
    go_cache = {}
    names = {}  # (module, rust name) -> definition name
    go_structs = {}
    for (module, rust_name) in messages:
        if not included(module):
            continue
        repo, pkg = go_location(module)
        if (repo, pkg) not in go_cache:
            go_cache[(repo, pkg)] = parse_go_package(*repos[repo], pkg) if repo else ({}, {})
        structs, slices = go_cache[(repo, pkg)]
        lower = {n.lower(): n for n in list(structs) + list(slices)}
        go_name = lower.get(rust_name.lower())
        if go_name is None:
            print(f"warning: no Go type for {module}.{rust_name}", file=sys.stderr)
        names[(module, rust_name)] = definition_prefix(module) + "." + (go_name or rust_name)
        go_structs[(module, rust_name)] = (structs.get(go_name), slices.get(go_name))

    def type_name(t):
        if not t or isinstance(t, str):
            return t or ""
        if t not in names:
            raise SystemExit(f"referenced message {t} is not included")
        return names[t]

    out = {}
    for key in sorted(names, key=lambda k: names[k]):
        struct, slice_elem = go_structs[key]
        if slice_elem is not None:
            out[names[key]] = {"list": slice_elem}
            continue
        fields = []
        for f in sorted(messages[key], key=lambda f: f["tag"]):
            info = (struct or {}).get(f["tag"])
            flags = ""
            if info:
                json_name = info["json"]
                flags += "g"
                if info["inline"]:
                    flags += "i"
                if info["omitempty"] and not info["pointer"] and not info["container"]:
                    flags += "z"
            else:
                json_name = lower_camel(f["rust"])
                print(f"warning: no Go field for {names[key]} tag {f['tag']}", file=sys.stderr)
            t = f["type"]
            t = type_name(t) if isinstance(t, tuple) else t
            fields.append([f["tag"], json_name, f["kind"], t, f["mode"], flags])
        out[names[key]] = {"fields": fields}
    json.dump(out, sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
