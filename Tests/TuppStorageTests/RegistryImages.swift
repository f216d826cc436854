import TuppSystem
import TuppTestSupport

/// OCI layouts the registry tests push, built with umoci in `directory`/L:
/// - `base`: one layer with a setuid file, hard links, symlinks, a FIFO, owners, modes;
/// - `app`: base + a layer that changes, chmods, chowns, deletes (whiteouts) and hard
///   links, + a hand-made layer with an opaque directory and a whiteout-then-recreate;
///   its config sets Entrypoint, Cmd, Env, WorkingDir, User and StopSignal;
/// - `other`: base + a layer of its own (shares the base layer with `app`);
/// - `big`: base + a layer of `BIG_MIB` MiB of random bytes (to interrupt).
let registryImagesScript = #"""
set -e
cd "$1"
umoci init --layout L
umoci new --image L:base
umoci unpack --image L:base B >/dev/null
R=B/rootfs
mkdir -p $R/etc $R/bin $R/usr/lib $R/opaque/keep $R/del/sub $R/home/u
echo base > $R/etc/motd; head -c 300000 /dev/urandom > $R/usr/lib/blob
printf '#!/bin/sh\necho tool\n' > $R/bin/tool; chmod 4755 $R/bin/tool; ln $R/bin/tool $R/bin/tool2; ln -s tool $R/bin/t
echo a > $R/opaque/a; echo b > $R/opaque/b; echo k > $R/opaque/keep/k; echo x > $R/del/sub/x; echo gone > $R/gone
chown -R 1000:1000 $R/home/u; chmod 700 $R/home/u; mkfifo $R/fifo; ln -s /etc/motd $R/motdlink
umoci repack --image L:base B >/dev/null
umoci config --image L:base --config.env PATH=/usr/bin:/bin --config.cmd /bin/sh

umoci unpack --image L:base A >/dev/null
R=A/rootfs
echo changed > $R/etc/motd; chmod 600 $R/etc/motd; chown 5:6 $R/etc/motd
rm $R/gone; rm -rf $R/del; rm $R/opaque/a; echo new > $R/newfile; ln $R/newfile $R/newlink
ln -sfn ../newfile $R/bin/t; chmod 2750 $R/home/u
umoci repack --image L:app A >/dev/null
python3 -c '
import tarfile, io
def add(tf, name, data=b"", mode=0o644, type=tarfile.REGTYPE):
    ti = tarfile.TarInfo(name); ti.type = type; ti.mode = mode; ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data) if data else None)
with tarfile.open("l3.tar", "w", format=tarfile.PAX_FORMAT) as tf:
    add(tf, "opaque", mode=0o755, type=tarfile.DIRTYPE)
    add(tf, "opaque/.wh..wh..opq")
    add(tf, "opaque/d", b"dee")
    add(tf, "etc/.wh.motd")
    add(tf, "etc/motd", b"third", mode=0o640)
'
umoci raw add-layer --image L:app l3.tar
umoci config --image L:app --config.entrypoint /bin/sh --config.cmd -c --config.cmd 'echo hi' \
  --config.env APP=1 --config.workingdir /srv --config.user 1000:1000 --config.stopsignal SIGINT

umoci unpack --image L:base O >/dev/null
echo other > O/rootfs/other; rm O/rootfs/etc/motd
umoci repack --image L:other O >/dev/null

umoci unpack --image L:base G >/dev/null
head -c $((${BIG_MIB:-1} * 1048576)) /dev/urandom > G/rootfs/big
umoci repack --image L:big G >/dev/null
"""#

/// Adds to layout `layout` an index tagged `tag` listing the manifests tagged in
/// `entries` ("TAG=OS/ARCH"), retagging each image's config to that platform first.
let platformIndexScript = #"""
set -e
layout="$1"; tag="$2"; shift 2
for entry in "$@"; do
  name="${entry%%=*}"; platform="${entry#*=}"
  umoci config --image "$layout:$name" --os "${platform%%/*}" --architecture "${platform#*/}"
done
python3 - "$layout" "$tag" "$@" <<'PY'
import hashlib, json, sys
layout, tag, entries = sys.argv[1], sys.argv[2], sys.argv[3:]
index = json.load(open(f"{layout}/index.json"))
manifests = []
for entry in entries:
    name, platform = entry.split("=")
    os_, arch = platform.split("/")
    d = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name)
    manifests.append({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                      "platform": {"os": os_, "architecture": arch}})
blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}).encode()
digest = hashlib.sha256(blob).hexdigest()
open(f"{layout}/blobs/sha256/{digest}", "wb").write(blob)
index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest,
                           "size": len(blob), "annotations": {"org.opencontainers.image.ref.name": tag}})
json.dump(index, open(f"{layout}/index.json", "w"))
PY
"""#

/// Adds to layout `$1` the image tagged `$2` again as `$3` with every layer recompressed
/// with zstd (the zstd CLI; the config, and so the DiffIDs, stay the same).
let zstdCopyScript = #"""
set -e
python3 - "$@" <<'PY'
import gzip, hashlib, json, subprocess, sys
layout, source, target = sys.argv[1:4]
index = json.load(open(f"{layout}/index.json"))
d = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == source)
def blob(digest): return open(f"{layout}/blobs/sha256/{digest[7:]}", "rb").read()
def put(data):
    digest = hashlib.sha256(data).hexdigest()
    open(f"{layout}/blobs/sha256/{digest}", "wb").write(data)
    return "sha256:" + digest, len(data)
manifest = json.loads(blob(d["digest"]))
for layer in manifest["layers"]:
    plain = gzip.decompress(blob(layer["digest"]))
    packed = subprocess.run(["zstd", "-q", "-c"], input=plain, stdout=subprocess.PIPE, check=True).stdout
    layer["digest"], layer["size"] = put(packed)
    layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
digest, size = put(json.dumps(manifest).encode())
index["manifests"].append({"mediaType": d["mediaType"], "digest": digest, "size": size,
                           "annotations": {"org.opencontainers.image.ref.name": target}})
json.dump(index, open(f"{layout}/index.json", "w"))
PY
"""#

/// Builds the layouts in `work` (see `registryImagesScript`); returns the layout path.
@discardableResult
func buildRegistryImages(in work: String, bigMiB: Int = 1) throws -> String {
    try Spawn.checked(["sh", "-c", registryImagesScript, "sh", work], environment: ["BIG_MIB=\(bigMiB)"])
    return "\(work)/L"
}

extension Spawn {
    /// Runs a witness or fixture command; a non-zero exit throws with its output.
    @discardableResult
    static func checked(_ argv: [String], environment: [String] = []) throws -> Output {
        let result = try run(argv, stderrToStdout: true,
                             environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"] + environment)
        if result.status != 0 {
            throw SystemError.failure("run", argv.prefix(3).joined(separator: " "), "exit \(result.status): \(result.output)")
        }
        return result
    }
}
