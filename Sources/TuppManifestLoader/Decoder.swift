import TuppBase
import TuppManifest
import TuppRegistry
import TuppSystem

/// Turns one document's node tree into manifest elements, collecting every problem
/// instead of stopping at the first. Semantic checks that need the whole manifest are
/// in `Validator`.
struct DocumentDecoder {
    let file: String
    /// Directory that relative paths in this file are relative to.
    let baseDirectory: String
    var diagnostics: [Diagnostic] = []

    init(file: String, baseDirectory: String) {
        self.file = file
        self.baseDirectory = baseDirectory
    }

    mutating func error(_ node: Node, _ message: String) {
        diagnostics.append(Diagnostic(file: file, mark: node.mark, message))
    }

    mutating func error(_ mark: Mark, _ message: String) {
        diagnostics.append(Diagnostic(file: file, mark: mark, message))
    }

    func location(_ node: Node) -> SourceMap.Location { .init(file: file, mark: node.mark) }

    // MARK: Document

    mutating func decode(_ root: Node?, into manifest: inout Manifest, documentMark: Mark) {
        guard let root, !isNull(root) else {
            error(documentMark, "empty document: a manifest needs at least `version: 1`")
            return
        }
        guard var fields = mapping(root, "the manifest") else { return }
        if let version = fields.take("version") {
            if case .int(let v)? = scalar(version), v == 1 {
            } else {
                error(version, "unsupported manifest version \(describe(version)); this tupp reads version 1")
            }
        } else {
            error(root, "missing required key \"version\" (add `version: 1`)")
        }
        if let node = fields.take("project"), let name = string(node, "project") {
            // Files naming different projects were grouped apart by the loader (or made one
            // by --project), so only the name itself is checked here.
            if let problem = Names.projectProblem(name) {
                error(node, "project name \"\(name)\" \(problem)")
            } else if manifest.sources["project"] == nil {
                manifest.project = name
                manifest.sources["project"] = location(node)
            }
        }
        // A name may be declared in several files when every declaration is identical, so
        // each example file can stand alone and a directory of them still forms one state.
        if let node = fields.take("storage") {
            let previous = manifest.sources["storage"]
            if previous == nil { manifest.sources["storage"] = location(node) }
            if let storage = decodeStorage(node) {
                if let previous {
                    if manifest.storage != storage {
                        error(node, "storage is already declared differently at \(previous.file):\(previous.mark); there is one pool per host")
                    }
                } else {
                    manifest.storage = storage
                }
            }
        }
        if let node = fields.take("defaults"), let defaults = decodeDefaults(node),
           declareOnce("defaults", node, same: manifest.defaults == defaults, into: &manifest) {
            manifest.defaults = defaults
        }
        if let node = fields.take("userns"), let settings = decodeUserNamespaces(node),
           declareOnce("userns", node, same: manifest.userNamespaces == settings, into: &manifest) {
            manifest.userNamespaces = settings
        }
        for kind in ["images", "volumes", "networks", "containers"] {
            guard let section = fields.take(kind), var entries = mapping(section, kind, allowNull: true) else { continue }
            for (keyNode, value) in entries.all() {
                let name = keyText(keyNode)
                let path = "\(kind).\(name)"
                let singular = String(kind.dropLast())
                let previous = manifest.sources[path]
                if previous == nil {
                    manifest.sources[path] = location(keyNode)
                    if let problem = Names.dnsLabelProblem(name) {
                        error(keyNode, "\(singular) name \"\(name)\" \(problem) (names are DNS labels: lowercase letters, digits, '-')")
                    }
                }
                // A repeated declaration is decoded on the side and compared; the first
                // declaration's values and locations stand.
                guard let previous else {
                    decodeEntry(kind, name, value, into: &manifest)
                    continue
                }
                var scratch = Manifest()
                let errorsBefore = diagnostics.count
                decodeEntry(kind, name, value, into: &scratch)
                let same: Bool
                switch kind {
                case "images": same = scratch.images[name] == manifest.images[name]
                case "networks": same = scratch.networks[name] == manifest.networks[name]
                case "volumes": same = scratch.volumes[name] == manifest.volumes[name]
                default: same = scratch.containers[name] == manifest.containers[name]
                }
                if !same && diagnostics.count == errorsBefore {
                    error(keyNode, "\(singular) \"\(name)\" is already declared differently at \(previous.file):\(previous.mark); names are global across files, so declarations must match")
                }
            }
        }
        finish(&fields, in: "the manifest")
    }

    /// A top-level section may be repeated in several files when every declaration is
    /// identical (as `storage`): true when this one is the first and should be stored.
    mutating func declareOnce(_ key: String, _ node: Node, same: Bool, into manifest: inout Manifest) -> Bool {
        guard let previous = manifest.sources[key] else {
            manifest.sources[key] = location(node)
            return true
        }
        if !same {
            error(node, "\(key) is already declared differently at \(previous.file):\(previous.mark); declarations in several files must match")
        }
        return false
    }

    /// `defaults: { userns: host | auto }`.
    mutating func decodeDefaults(_ node: Node) -> ContainerDefaults? {
        guard var fields = mapping(node, "defaults") else { return nil }
        var defaults = ContainerDefaults()
        if let n = fields.take("userns") { defaults.userns = usernsMode(n, "defaults userns") }
        finish(&fields, in: "defaults")
        return defaults
    }

    /// `userns: { range: { start, size } }`.
    mutating func decodeUserNamespaces(_ node: Node) -> UserNamespaceSettings? {
        guard var fields = mapping(node, "userns") else { return nil }
        var settings = UserNamespaceSettings()
        if let rnode = fields.take("range"), var rfields = mapping(rnode, "userns.range") {
            let startNode = rfields.take("start"), sizeNode = rfields.take("size")
            let start = startNode.flatMap { integer($0, "userns.range.start") }
            let size = sizeNode.flatMap { integer($0, "userns.range.size") }
            if !rfields.had("start") { error(rnode, "userns.range needs \"start\" (the first host id, e.g. 1879048192)") }
            if !rfields.had("size") { error(rnode, "userns.range needs \"size\" (a multiple of 65536 ids, e.g. 6553600 for 100 containers)") }
            finish(&rfields, in: "userns.range")
            if let start, let size, let startNode, let sizeNode {
                let per = Int64(UserNamespaceSettings.idsPerContainer)
                if start < 1 || start >= Int64(IDRange.idLimit) {
                    error(startNode, "userns.range.start \(start) must be 1…4294967294 (0 is host root)")
                } else if size < per || size % per != 0 {
                    error(sizeNode, "userns.range.size \(size) must be a positive multiple of 65536 (each container gets 65536 ids)")
                } else if UInt64(start) + UInt64(size) > IDRange.idLimit {
                    error(sizeNode, "userns.range ends at \(UInt64(start) + UInt64(size) - 1), beyond the last valid id 4294967294")
                } else {
                    settings.range = IDRange(start: UInt64(start), size: UInt64(size))
                }
            }
        }
        finish(&fields, in: "userns")
        return settings
    }

    mutating func usernsMode(_ node: Node, _ what: String) -> UserNamespaceMode? {
        guard let text = string(node, what) else { return nil }
        guard let mode = UserNamespaceMode(rawValue: text) else {
            error(node, "\(what) must be host or auto (got \"\(text)\")\(suggestion(text, UserNamespaceMode.allCases.map(\.rawValue)))")
            return nil
        }
        return mode
    }

    mutating func decodeEntry(_ kind: String, _ name: String, _ value: Node, into manifest: inout Manifest) {
        switch kind {
        case "images": decodeImage(name, value, into: &manifest)
        case "networks": decodeNetwork(name, value, into: &manifest)
        case "volumes": decodeVolume(name, value, into: &manifest)
        default: decodeContainer(name, value, into: &manifest)
        }
    }

    // MARK: Sections

    mutating func decodeStorage(_ node: Node) -> Storage? {
        guard var fields = mapping(node, "storage") else { return nil }
        let root = fields.take("root").flatMap { path($0, "storage.root") }
        var device: Storage.Device?
        if let dnode = fields.take("device"), var dfields = mapping(dnode, "storage.device") {
            let file = dfields.take("file").flatMap { path($0, "storage.device.file") }
            let size = dfields.take("size").flatMap { sizeValue($0) }
            if !dfields.had("file") { error(dnode, "storage.device needs \"file\" (the loop image path)") }
            if !dfields.had("size") { error(dnode, "storage.device needs \"size\" (e.g. 2GiB)") }
            finish(&dfields, in: "storage.device")
            if let file, let size { device = Storage.Device(file: file, size: size) }
        }
        if !fields.had("root") { error(node, "storage needs \"root\" (the pool's mount point, e.g. /var/lib/tupp/pool)") }
        finish(&fields, in: "storage")
        guard let root else { return nil }
        return Storage(root: root, device: device)
    }

    mutating func decodeImage(_ name: String, _ node: Node, into manifest: inout Manifest) {
        let what = "image \"\(name)\""
        guard var fields = mapping(node, what) else { return }
        var sources: [(Node, Image.Source)] = []
        let kinds = ["busybox", "tar", "oci", "directory"]
        for kind in kinds {
            guard let value = fields.take(kind), let text = string(value, "\(what) \(kind)") else { continue }
            let source: Image.Source
            switch kind {
            case "busybox": source = .busybox(path: resolvePath(text))
            case "tar": source = .tar(path: resolvePath(text))
            case "directory": source = .directory(path: resolvePath(text))
            default:
                // DIR[:TAG]; a tag never contains "/", so split at the last ':' after the last '/'.
                let (dir, tag) = Self.splitOCIReference(text)
                if tag?.isEmpty == true { error(value, "empty tag in oci reference \"\(text)\"") }
                source = .oci(layout: resolvePath(dir), tag: tag)
            }
            manifest.sources["images.\(name).source"] = location(value)
            sources.append((value, source))
        }
        if let r = fields.take("registry") {
            manifest.sources["images.\(name).source"] = location(r)
            if let registry = decodeRegistry(r, what: what, fields: &fields) { sources.append((r, .registry(registry))) }
        } else {
            for key in ["platform", "insecure", "ca"] {
                if let n = fields.take(key) { error(n, "\(what) \(key) applies to registry images only") }
            }
        }
        let protect = fields.take("protect").flatMap { bool($0, "\(what) protect") } ?? false
        finish(&fields, in: what)
        let all = "busybox, tar, oci, directory, registry"
        if sources.isEmpty {
            if !fields.had("registry") { error(node, "\(what) needs a source: one of \(all)") }
            return
        }
        if sources.count > 1 {
            error(sources[1].0, "\(what) has more than one source; choose one of \(all)")
            return
        }
        manifest.images[name] = Image(name: name, source: sources[0].1, protect: protect)
    }

    /// `registry: REF` with `platform`, `insecure` and `ca`: the reference normalized the way
    /// every client reads it (no host: docker.io; one part there: library/NAME; no tag:
    /// latest), so that `nginx` and `docker.io/library/nginx:latest` are the same image.
    mutating func decodeRegistry(_ node: Node, what: String, fields: inout Fields) -> RegistryImage? {
        let text = string(node, "\(what) registry")
        var platform: String?
        if let n = fields.take("platform"), let value = string(n, "\(what) platform") {
            do { platform = try Platform.parse(value).description } catch {
                self.error(n, "platform \"\(value)\": \(error.detail ?? "expected OS/ARCH or OS/ARCH/VARIANT, such as linux/arm64")")
            }
        }
        let insecureNode = fields.take("insecure")
        let insecure = insecureNode.flatMap { bool($0, "\(what) insecure") } ?? false
        var ca: String?
        if let n = fields.take("ca") {
            ca = path(n, "\(what) ca")
            if insecure, ca != nil { error(n, "\(what) has both insecure: true (plain HTTP) and a ca file (for TLS); keep one") }
        }
        guard let text else { return nil }
        do {
            let reference = try ImageReference.parse(text)
            return RegistryImage(reference: reference.description, platform: platform, insecure: insecure, ca: ca)
        } catch {
            self.error(node, "registry reference \"\(text)\": \(error.detail ?? "not [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST]")")
            return nil
        }
    }

    mutating func decodeVolume(_ name: String, _ node: Node, into manifest: inout Manifest) {
        let what = "volume \"\(name)\""
        let prefix = "volumes.\(name)"
        guard var fields = mapping(node, what, allowNull: true) else { return }
        var settings = VolumeSettings()
        var valid = true
        if let n = fields.take("size") {
            manifest.sources["\(prefix).size"] = location(n)
            if let size = sizeValue(n) {
                // btrfs counts metadata too: a limit below a few MiB fails the first writes.
                if size < 1 << 20 {
                    error(n, "volume size \(Units.formatSize(size)) is too small: at least 1MiB")
                    valid = false
                }
                settings.size = size
            } else { valid = false }
        }
        if let n = fields.take("owner") {
            manifest.sources["\(prefix).owner"] = location(n)
            if let text = string(n, "\(what) owner", allowNumbers: true) {
                if let owner = VolumeOwner(text) { settings.owner = owner } else {
                    error(n, "owner \"\(text)\" is not UID:GID, e.g. \"999:999\" (numeric ids: names would be looked up on the host, not in the container)")
                    valid = false
                }
            } else { valid = false }
        }
        if let n = fields.take("mode") {
            manifest.sources["\(prefix).mode"] = location(n)
            // An unquoted 0700 is a number to YAML; its digits are what the user wrote.
            if case .scalar(let text, _) = n.value, let mode = VolumeSettings.parseMode(text) {
                settings.mode = mode
            } else {
                error(n, "mode must be 3 or 4 octal digits such as \"0700\" (got \(describe(n)))")
                valid = false
            }
        }
        let protect = fields.take("protect").flatMap { bool($0, "\(what) protect") } ?? false
        finish(&fields, in: what)
        guard valid else { return }
        manifest.volumes[name] = Volume(name: name, settings: settings, protect: protect)
    }

    static func splitOCIReference(_ text: String) -> (String, String?) {
        let afterSlash = text.lastIndex(of: "/").map { text.index(after: $0) } ?? text.startIndex
        if let colon = text[afterSlash...].lastIndex(of: ":") {
            return (String(text[..<colon]), String(text[text.index(after: colon)...]))
        }
        return (text, nil)
    }

    mutating func decodeNetwork(_ name: String, _ node: Node, into manifest: inout Manifest) {
        let what = "network \"\(name)\""
        guard var fields = mapping(node, what) else { return }
        let prefix = "networks.\(name)"
        let bridge = fields.take("bridge").flatMap { n -> String? in
            manifest.sources["\(prefix).bridge"] = location(n)
            return string(n, "\(what) bridge")
        }
        var subnet: IPv4Network?
        if let n = fields.take("subnet"), let text = string(n, "\(what) subnet") {
            manifest.sources["\(prefix).subnet"] = location(n)
            if let parsed = IPv4Network(text) {
                subnet = parsed
            } else if let iface = IPv4Interface(text) {
                error(n, "subnet \"\(text)\" has host bits set; did you mean \(iface.network)?")
            } else {
                error(n, "subnet \"\(text)\" is not an IPv4 CIDR such as 172.17.0.0/16")
            }
        }
        var gateway: IPv4Address?
        if let n = fields.take("gateway"), let text = string(n, "\(what) gateway") {
            manifest.sources["\(prefix).gateway"] = location(n)
            gateway = IPv4Address(text)
            if gateway == nil { error(n, "gateway \"\(text)\" is not an IPv4 address such as 172.17.0.1") }
        }
        var mtu: Int?
        if let n = fields.take("mtu"), let v = integer(n, "\(what) mtu") {
            manifest.sources["\(prefix).mtu"] = location(n)
            if (68...65535).contains(v) { mtu = Int(v) } else { error(n, "mtu \(v) is outside 68…65535") }
        }
        let nat = fields.take("nat").flatMap { bool($0, "\(what) nat") } ?? false
        if bridge == nil && !fields.had("bridge") { error(node, "\(what) needs \"bridge\" (the host bridge device name)") }
        if subnet == nil && !fields.had("subnet") { error(node, "\(what) needs \"subnet\" (e.g. 172.17.0.0/16)") }
        finish(&fields, in: what)
        guard let bridge, let subnet else { return }
        if fields.had("gateway") && gateway == nil { return }
        manifest.networks[name] = Network(name: name, bridge: bridge, subnet: subnet, gateway: gateway, mtu: mtu, nat: nat)
    }

    mutating func decodeContainer(_ name: String, _ node: Node, into manifest: inout Manifest) {
        let what = "container \"\(name)\""
        let prefix = "containers.\(name)"
        guard var fields = mapping(node, what) else { return }
        func note(_ key: String, _ n: Node) { manifest.sources["\(prefix).\(key)"] = location(n) }

        var image: String?
        if let n = fields.take("image") { note("image", n); image = string(n, "\(what) image") }
        if image == nil && !fields.had("image") { error(node, "\(what) needs \"image\" (a key of `images`)") }

        var hostname: String?
        if let n = fields.take("hostname") { note("hostname", n); hostname = string(n, "\(what) hostname") }

        var namespaces = Namespace.defaults
        if let n = fields.take("namespaces") {
            note("namespaces", n)
            if let items = list(n, "\(what) namespaces") {
                namespaces = []
                for item in items {
                    guard let text = string(item, "namespace") else { continue }
                    guard let ns = Namespace(rawValue: text) else {
                        let supported = Namespace.allCases.map(\.rawValue).joined(separator: ", ")
                        let hint = text == "user" ? " (give the container `userns: auto` for a user namespace of its own)"
                            : ["cgroup", "time"].contains(text) ? " (\(text) namespaces are not supported yet)" : suggestion(text, Namespace.allCases.map(\.rawValue))
                        error(item, "unknown namespace kind \"\(text)\"\(hint); supported: \(supported)")
                        continue
                    }
                    if namespaces.contains(ns) { error(item, "namespace \"\(text)\" is listed twice") }
                    namespaces.append(ns)
                }
            }
        }

        var mounts: [Mount] = []
        if let n = fields.take("mounts") {
            note("mounts", n)
            if let items = list(n, "\(what) mounts") {
                for (i, item) in items.enumerated() {
                    if let m = decodeMount(item, what: "\(what) mounts[\(i)]", path: "\(prefix).mounts[\(i)]", manifest: &manifest) {
                        mounts.append(m)
                    }
                }
            }
        }

        var attachment: Container.NetworkAttachment?
        if let n = fields.take("network") {
            note("network", n)
            attachment = decodeAttachment(n, what: "\(what) network", path: "\(prefix).network", manifest: &manifest)
        }

        var command: [String]?
        if let n = fields.take("command") {
            note("command", n)
            command = argv(n, what: "\(what) command") { "[\"/bin/sh\", \"-c\", \"\($0)\"]" }
        }
        var entrypoint: [String]?
        if let n = fields.take("entrypoint") {
            note("entrypoint", n)
            entrypoint = argv(n, what: "\(what) entrypoint") { "[\"\($0)\"]" }
        }

        var env: [(key: String, value: String)] = []
        if let n = fields.take("env") {
            note("env", n)
            if var entries = mapping(n, "\(what) env", allowNull: true) {
                for (k, v) in entries.all() {
                    let key = keyText(k)
                    if key.isEmpty || key.contains("=") || key.utf8.contains(0) {
                        error(k, "environment variable name \"\(key)\" must be non-empty and contain no '=' or NUL")
                        continue
                    }
                    manifest.sources["\(prefix).env.\(key)"] = location(k)
                    guard let value = string(v, "environment variable \(key)", allowNumbers: true) else { continue }
                    if value.utf8.contains(0) { error(v, "environment values cannot contain NUL bytes") }
                    env.append((key, value))
                }
            }
        }

        var workdir: String?
        if let n = fields.take("workdir") {
            note("workdir", n)
            workdir = string(n, "\(what) workdir")
        }

        var restart = RestartPolicy.no
        if let n = fields.take("restart") {
            note("restart", n)
            // `restart: no` is the string "no" here (YAML 1.2); a YAML 1.1 reader makes it
            // the boolean false, which we accept for the same meaning.
            if case .bool(false)? = scalar(n) {
                restart = .no
            } else if let text = string(n, "\(what) restart") {
                if let r = RestartPolicy(rawValue: text) { restart = r } else {
                    error(n, "restart must be one of no, on-failure, always, unless-stopped (got \"\(text)\")\(suggestion(text, RestartPolicy.allCases.map(\.rawValue)))")
                }
            }
        }

        var add: [Capability] = [], drop: [Capability] = []
        var ambient: [Capability] = []
        if let n = fields.take("capabilities") {
            note("capabilities", n)
            if var cfields = mapping(n, "\(what) capabilities") {
                for (key, into) in [("add", 0), ("drop", 1), ("ambient", 2)] {
                    guard let ln = cfields.take(key) else { continue }
                    guard let items = list(ln, "capabilities \(key)") else { continue }
                    for item in items {
                        guard let text = string(item, "capability") else { continue }
                        guard let cap = Capability.named(text) else {
                            error(item, "unknown capability \"\(text)\"\(suggestion(text.uppercased().replacingPrefix("CAP_"), Capability.all.map(\.name)))")
                            continue
                        }
                        switch into {
                        case 0: add.append(cap)
                        case 1: drop.append(cap)
                        default: ambient.append(cap)
                        }
                    }
                }
                finish(&cfields, in: "\(what) capabilities")
            }
        }

        var stopTimeout = 10.0
        if let n = fields.take("stopTimeout") {
            note("stopTimeout", n)
            if let d = duration(n) { stopTimeout = d }
        }
        let protect = fields.take("protect").flatMap { bool($0, "\(what) protect") } ?? false
        var userns: UserNamespaceMode?
        if let n = fields.take("userns") { note("userns", n); userns = usernsMode(n, "\(what) userns") }
        var delegateCgroup = false
        if let n = fields.take("delegateCgroup") { note("delegateCgroup", n); delegateCgroup = bool(n, "\(what) delegateCgroup") ?? false }
        let nameService = decodeNameService(&fields, what: what, path: prefix, manifest: &manifest)
        var confinement = decodeConfinement(&fields, what: what, path: prefix, manifest: &manifest)
        confinement.ambient = ambient
        let lifecycle = decodeLifecycle(&fields, what: what, path: prefix, manifest: &manifest)
        finish(&fields, in: what)
        // Stored even when a field was bad, so whole-manifest checks still run on the rest;
        // the load fails on the diagnostics already recorded.
        guard let image else { return }
        manifest.containers[name] = Container(
            name: name, image: image, hostname: hostname, namespaces: namespaces, mounts: mounts,
            network: attachment, command: command, entrypoint: entrypoint, env: env, workdir: workdir, restart: restart,
            capabilitiesAdd: add, capabilitiesDrop: drop, stopTimeout: stopTimeout, protect: protect,
            nameService: nameService, confinement: confinement, lifecycle: lifecycle, userns: userns, delegateCgroup: delegateCgroup)
    }

    /// A program and its arguments (`command`, `entrypoint`): a non-empty list of strings.
    /// `example` shows the string that was written as the list it should be.
    mutating func argv(_ n: Node, what: String, example: (String) -> String) -> [String]? {
        if case .scalar = n.value, case .string(let s)? = scalar(n) {
            error(n, "\(what) must be a list, e.g. \(example(s.count > 30 ? String(s.prefix(30)) + "…" : s))")
            return nil
        }
        guard let items = list(n, what) else { return nil }
        if items.isEmpty {
            error(n, "\(what) is empty; give the program and its arguments")
            return nil
        }
        var out: [String] = []
        for item in items {
            guard let s = string(item, "\(what) argument", allowNumbers: true) else { continue }
            if s.utf8.contains(0) { error(item, "\(what) arguments cannot contain NUL bytes") }
            out.append(s)
        }
        return out
    }

    mutating func decodeMount(_ node: Node, what: String, path: String, manifest: inout Manifest) -> Mount? {
        guard var fields = mapping(node, what) else { return nil }
        manifest.sources[path] = location(node)
        var kind: Mount.Kind?
        if let n = fields.take("type"), let text = string(n, "\(what) type") {
            kind = Mount.Kind(rawValue: text)
            if kind == nil { error(n, "mount type must be bind, tmpfs or volume (got \"\(text)\")\(suggestion(text, ["bind", "tmpfs", "volume"]))") }
        } else if !fields.had("type") {
            error(node, "\(what) needs \"type\" (bind, tmpfs or volume)")
        }
        var target: String?
        if let n = fields.take("target") {
            manifest.sources["\(path).target"] = location(n)
            target = string(n, "\(what) target")
        } else { error(node, "\(what) needs \"target\" (an absolute path inside the container)") }
        var source: String?
        if let n = fields.take("source") {
            manifest.sources["\(path).source"] = location(n)
            if let s = string(n, "\(what) source") {
                switch kind {
                case .tmpfs?: error(n, "tmpfs mounts take no \"source\"")
                case .volume?: source = s   // a key of `volumes`, checked by the validator
                default: source = resolvePath(s)
                }
            }
        } else if kind == .bind {
            error(node, "\(what) is a bind mount and needs \"source\" (a host path)")
        } else if kind == .volume {
            error(node, "\(what) is a volume mount and needs \"source\" (a key of `volumes`)")
        }
        var options: [String] = []
        if let n = fields.take("options"), let items = list(n, "\(what) options") {
            manifest.sources["\(path).options"] = location(n)
            for item in items {
                guard let text = string(item, "mount option", allowNumbers: true) else { continue }
                if let kind, let problem = MountOptions.problem(text, kind: kind) { error(item, problem) }
                options.append(text)
            }
        }
        let readonly = fields.take("readonly").flatMap { bool($0, "\(what) readonly") } ?? false
        finish(&fields, in: what)
        guard let kind, let target, kind == .tmpfs || source != nil else { return nil }
        return Mount(kind: kind, source: source, target: target, options: options, readonly: readonly)
    }

    mutating func decodeAttachment(_ node: Node, what: String, path: String, manifest: inout Manifest) -> Container.NetworkAttachment? {
        guard var fields = mapping(node, what) else { return nil }
        var attach: String?
        if let n = fields.take("attach") {
            manifest.sources["\(path).attach"] = location(n)
            attach = string(n, "\(what) attach")
        } else { error(node, "\(what) needs \"attach\" (a key of `networks`)") }
        var interface = "eth0"
        if let n = fields.take("interface") {
            manifest.sources["\(path).interface"] = location(n)
            if let s = string(n, "\(what) interface") { interface = s }
        }
        var address: IPv4Interface?
        var addressOK = true
        if let n = fields.take("address") {
            manifest.sources["\(path).address"] = location(n)
            if let text = string(n, "\(what) address") {
                if let iface = IPv4Interface(text) {
                    address = iface
                } else if let plain = IPv4Address(text) {
                    // Prefix length comes from the network's subnet (filled in by the validator).
                    address = IPv4Interface(address: plain, prefixLength: -1)
                } else {
                    error(n, "address \"\(text)\" is not an IPv4 address such as 172.17.42.3/16")
                    addressOK = false
                }
            } else { addressOK = false }
        }
        let ports = fields.take("ports").map { decodePorts($0, what: "\(what) ports", path: "\(path).ports", manifest: &manifest) } ?? []
        finish(&fields, in: what)
        guard let attach, addressOK else { return nil }
        return Container.NetworkAttachment(attach: attach, interface: interface, address: address, ports: ports)
    }

    /// `ports:` — "8080:80", "127.0.0.1:5432:5432", "53:53/udp", "9000-9002:9000-9002", or
    /// `{ host: "0.0.0.0:8080", container: 80, protocol: tcp }`.
    mutating func decodePorts(_ node: Node, what: String, path: String, manifest: inout Manifest) -> [PortPublication] {
        manifest.sources[path] = location(node)
        guard let items = list(node, what) else { return [] }
        var out: [PortPublication] = []
        for (index, item) in items.enumerated() {
            manifest.sources["\(path)[\(index)]"] = location(item)
            do {
                if case .mapping = item.value {
                    guard var fields = mapping(item, "\(what) entry") else { continue }
                    let host = fields.take("host").flatMap { string($0, "port host", allowNumbers: true) }
                    let containerNode = fields.take("container")
                    let proto = fields.take("protocol").flatMap { string($0, "port protocol") }
                    if !fields.had("host") { error(item, "a port needs \"host\" (\"8080\" or \"127.0.0.1:8080\")") }
                    if !fields.had("container") { error(item, "a port needs \"container\" (the container's port, e.g. 80)") }
                    finish(&fields, in: "\(what) entry")
                    guard let host, let containerNode else { continue }
                    if case .int(let port)? = scalar(containerNode) {
                        out.append(try PortPublication.parse(host: host, container: Int(port), protocol: proto))
                    } else if let text = string(containerNode, "port container", allowNumbers: true) {
                        out.append(try PortPublication.parse(host: host, container: text, protocol: proto))
                    }
                } else if let text = string(item, "port", allowNumbers: true) {
                    out.append(try PortPublication.parse(text))
                }
            } catch {
                self.error(item, "\(error)")
            }
        }
        return out
    }

    /// `seccomp`, `resources`, `user`, `readOnly`, `shmSize`, `ulimits` and `devices` of a container.
    mutating func decodeConfinement(_ fields: inout Fields, what: String, path: String, manifest: inout Manifest) -> Container.Confinement {
        var c = Container.Confinement()
        if let n = fields.take("seccomp"), let text = string(n, "\(what) seccomp") {
            manifest.sources["\(path).seccomp"] = location(n)
            switch text {
            case "default": c.seccomp = .default
            case "unconfined": c.seccomp = .unconfined
            default:
                if text.isEmpty { error(n, "seccomp is default, unconfined or the path of a profile (Docker/OCI JSON)") }
                else { c.seccomp = .profile(path: resolvePath(text)) }
            }
        }
        if let n = fields.take("user"), let text = string(n, "\(what) user", allowNumbers: true) {
            manifest.sources["\(path).user"] = location(n)
            if let user = UserSpec(text) { c.user = user } else { error(n, "user \"\(text)\" is not NAME, UID, NAME:GROUP or UID:GID") }
        }
        if let n = fields.take("readOnly") { c.readOnly = bool(n, "\(what) readOnly") ?? false }
        if let n = fields.take("shmSize") {
            manifest.sources["\(path).shmSize"] = location(n)
            c.shmSize = sizeValue(n)
        }
        if let n = fields.take("resources"), var r = mapping(n, "\(what) resources") {
            manifest.sources["\(path).resources"] = location(n)
            func int(_ key: String, _ range: ClosedRange<Int>) -> Int? {
                guard let v = r.take(key) else { return nil }
                guard case .int(let i)? = scalar(v), range.contains(Int(i)) else {
                    error(v, "resources.\(key) must be a whole number \(range.lowerBound)…\(range.upperBound)")
                    return nil
                }
                return Int(i)
            }
            if let v = r.take("memory"), let bytes = sizeValue(v) {
                if bytes < 1 << 20 { error(v, "resources.memory must be at least 1MiB") } else { c.resources.memory = Int(bytes) }
            }
            if let v = r.take("memorySwap"), let bytes = sizeValue(v) { c.resources.memorySwap = Int(bytes) }
            if let v = r.take("cpus") {
                switch scalar(v) {
                case .int(let i)? where i >= 1 && i <= 1024: c.resources.cpus = Double(i)
                case .float(let d)? where d >= 0.01 && d <= 1024: c.resources.cpus = d
                default: error(v, "resources.cpus must be a number of CPUs from 0.01 to 1024, e.g. 1.5")
                }
            }
            c.resources.cpuWeight = int("cpuWeight", 1...10000)
            c.resources.pids = int("pids", 1...4_194_304)
            c.resources.ioWeight = int("ioWeight", 1...10000)
            finish(&r, in: "\(what) resources")
            if c.resources.memorySwap != nil && c.resources.memory == nil {
                error(n, "resources.memorySwap is memory plus swap: it needs resources.memory")
            } else if let swap = c.resources.memorySwap, let memory = c.resources.memory, swap < memory {
                error(n, "resources.memorySwap (memory plus swap) must be at least resources.memory")
            }
        }
        if let n = fields.take("ulimits"), var entries = mapping(n, "\(what) ulimits") {
            manifest.sources["\(path).ulimits"] = location(n)
            for (k, v) in entries.all() {
                let key = keyText(k)
                guard let name = Ulimit.Name(rawValue: key) else {
                    error(k, "unknown ulimit \"\(key)\"\(suggestion(key, Ulimit.Name.allCases.map(\.rawValue)))")
                    continue
                }
                func limit(_ node: Node) -> UInt64?? {
                    switch scalar(node) {
                    case .int(let i)? where i >= 0: return .some(UInt64(i))
                    case .int(-1)?: return .some(nil)
                    case .string("unlimited")?: return .some(nil)
                    default:
                        error(node, "ulimit \(key) takes a number ≥ 0, -1 or \"unlimited\"")
                        return nil
                    }
                }
                if case .mapping = v.value, var pair = mapping(v, "ulimit \(key)") {
                    let soft = pair.take("soft").flatMap(limit)
                    let hard = pair.take("hard").flatMap(limit)
                    finish(&pair, in: "ulimit \(key)")
                    guard let soft, let hard else {
                        error(v, "ulimit \(key) needs both soft and hard")
                        continue
                    }
                    if let s = soft, let h = hard, s > h { error(v, "ulimit \(key): soft \(s) is above hard \(h)") }
                    c.ulimits.append(Ulimit(name, soft: soft, hard: hard))
                } else if let both = limit(v) {
                    c.ulimits.append(Ulimit(name, both))
                }
            }
        }
        if let n = fields.take("devices"), let items = list(n, "\(what) devices") {
            manifest.sources["\(path).devices"] = location(n)
            for item in items {
                var devicePath: String?
                var permissions = "rwm"
                if case .mapping = item.value, var d = mapping(item, "device") {
                    devicePath = d.take("path").flatMap { string($0, "device path") }
                    if let p = d.take("permissions").flatMap({ string($0, "device permissions") }) { permissions = p }
                    finish(&d, in: "device")
                } else if let text = string(item, "device") {
                    devicePath = text
                }
                guard let devicePath else { error(item, "a device needs \"path\" (e.g. /dev/fuse)"); continue }
                if !devicePath.hasPrefix("/dev/") || devicePath.contains("/../") || devicePath.hasSuffix("/..") {
                    error(item, "device \(devicePath) must be a path below /dev")
                } else if permissions.isEmpty || !permissions.allSatisfy({ "rwm".contains($0) }) {
                    error(item, "device permissions \"\(permissions)\" must be letters of r, w, m")
                } else {
                    c.devices.append(DeviceGrant(path: devicePath, permissions: permissions))
                }
            }
        }
        return c
    }

    /// `dns`, `dnsSearch`, `dnsOptions` and `hosts` of a container.
    mutating func decodeNameService(_ fields: inout Fields, what: String, path: String, manifest: inout Manifest) -> Container.NameService {
        var service = Container.NameService()
        if let n = fields.take("dns") {
            manifest.sources["\(path).dns"] = location(n)
            service.dns = (list(n, "\(what) dns") ?? []).compactMap { item in
                guard let text = string(item, "DNS server") else { return nil }
                guard let address = IPv4Address(text) else {
                    error(item, "DNS server \"\(text)\" is not an IPv4 address")
                    return nil
                }
                return address
            }
        }
        for (key, label) in [("dnsSearch", "search domain"), ("dnsOptions", "resolver option")] {
            guard let n = fields.take(key) else { continue }
            manifest.sources["\(path).\(key)"] = location(n)
            let values: [String] = (list(n, "\(what) \(key)") ?? []).compactMap { item in
                guard let text = string(item, label, allowNumbers: true) else { return nil }
                if text.isEmpty || !text.allSatisfy({ $0.isASCII && $0.asciiValue! > 32 && $0.asciiValue! < 127 }) {
                    error(item, "\(label) \"\(text)\" must be one word of printable ASCII")
                    return nil
                }
                return text
            }
            if key == "dnsSearch" { service.search = values } else { service.options = values }
        }
        if let n = fields.take("hosts") {
            manifest.sources["\(path).hosts"] = location(n)
            if var entries = mapping(n, "\(what) hosts", allowNull: true) {
                for (k, v) in entries.all() {
                    let name = keyText(k)
                    if let problem = Names.hostsEntryProblem(name) { error(k, "host name \"\(name)\" \(problem)") }
                    guard let text = string(v, "address of \(name)") else { continue }
                    guard let address = IPv4Address(text) else {
                        error(v, "address \"\(text)\" of \(name) is not an IPv4 address")
                        continue
                    }
                    service.hosts[name] = address
                }
            }
        }
        return service
    }

    // MARK: Typed access

    func scalar(_ node: Node) -> ScalarType? {
        guard case .scalar(let text, let plain) = node.value else { return nil }
        return ScalarType.resolve(text, plain: plain, tag: node.tag)
    }

    func describe(_ node: Node) -> String { node.kindDescription }

    func isNull(_ node: Node) -> Bool {
        if case .null? = scalar(node) { return true }
        return false
    }

    mutating func mapping(_ node: Node, _ what: String, allowNull: Bool = false) -> Fields? {
        if case .mapping(let items) = node.value { return Fields(items: items) }
        if allowNull, case .null? = scalar(node) { return Fields(items: []) }
        error(node, "\(what) must be a mapping, not \(describe(node))")
        return nil
    }

    mutating func list(_ node: Node, _ what: String) -> [Node]? {
        if case .sequence(let items) = node.value { return items }
        error(node, "\(what) must be a list, not \(describe(node))")
        return nil
    }

    mutating func string(_ node: Node, _ what: String, allowNumbers: Bool = false) -> String? {
        switch scalar(node) {
        case .string(let s)?: return s
        case .int?, .float?, .bool?:
            if allowNumbers, case .scalar(let text, _) = node.value { return text }
            error(node, "\(what) must be a string, not \(describe(node)) (quote it)")
        case nil:
            error(node, "\(what) must be a string, not \(describe(node))")
        default:
            error(node, "\(what) must be a string, not \(describe(node)) (quote it)")
        }
        return nil
    }

    mutating func bool(_ node: Node, _ what: String) -> Bool? {
        if case .bool(let b)? = scalar(node) { return b }
        error(node, "\(what) must be true or false, not \(describe(node))")
        return nil
    }

    mutating func integer(_ node: Node, _ what: String) -> Int64? {
        if case .int(let i)? = scalar(node) { return i }
        error(node, "\(what) must be an integer, not \(describe(node))")
        return nil
    }

    mutating func path(_ node: Node, _ what: String) -> String? {
        guard let text = string(node, what) else { return nil }
        if text.isEmpty { error(node, "\(what) is empty"); return nil }
        return resolvePath(text)
    }

    mutating func sizeValue(_ node: Node) -> UInt64? {
        let text: String
        switch scalar(node) {
        case .int(let i)?: text = String(i)
        case .string(let s)?: text = s
        default:
            error(node, "size must be a number of bytes or a size such as 2GiB, not \(describe(node))")
            return nil
        }
        switch Units.parseSize(text) {
        case .success(let v): return v
        case .failure(let e): error(node, e.message); return nil
        }
    }

    mutating func duration(_ node: Node) -> Double? {
        let text: String
        switch scalar(node) {
        case .int(let i)?: text = String(i)
        case .float(let f)?: text = String(f)
        case .string(let s)?: text = s
        default:
            error(node, "duration must be like 10s, 500ms or 1m, not \(describe(node))")
            return nil
        }
        switch Units.parseDuration(text) {
        case .success(let v): return v
        case .failure(let e): error(node, e.message); return nil
        }
    }

    func keyText(_ node: Node) -> String {
        if case .scalar(let text, _) = node.value { return text }
        return ""
    }

    func resolvePath(_ text: String) -> String {
        Self.normalize(text.hasPrefix("/") ? text : baseDirectory + "/" + text)
    }

    static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// Reports keys nobody took, with a "did you mean".
    mutating func finish(_ fields: inout Fields, in what: String) {
        for (key, _) in fields.remaining() {
            let name = keyText(key)
            error(key, "unknown key \"\(name)\" in \(what)\(suggestion(name, fields.taken))")
        }
    }

    func suggestion(_ word: String, _ candidates: [String]) -> String {
        guard let best = Suggest.closest(to: word, in: candidates) else { return "" }
        return "; did you mean \"\(best)\"?"
    }
}

/// A mapping's entries, tracking which keys the decoder understood.
struct Fields {
    private var items: [(key: Node, value: Node)]
    private var used: Set<Int> = []
    private(set) var taken: [String] = []

    init(items: [(key: Node, value: Node)]) { self.items = items }

    mutating func take(_ key: String) -> Node? {
        taken.append(key)
        guard let i = items.firstIndex(where: { if case .scalar(key, _) = $0.key.value { true } else { false } }) else { return nil }
        used.insert(i)
        return items[i].value
    }

    func had(_ key: String) -> Bool {
        items.contains { if case .scalar(key, _) = $0.key.value { true } else { false } }
    }

    mutating func all() -> [(key: Node, value: Node)] {
        used = Set(items.indices)
        return items
    }

    func remaining() -> [(key: Node, value: Node)] {
        items.enumerated().filter { !used.contains($0.offset) }.map(\.element)
    }
}

/// "Did you mean": the closest candidate by edit distance, if close enough.
enum Suggest {
    static func closest(to word: String, in candidates: [String]) -> String? {
        let w = Array(word.lowercased())
        var best: (String, Int)?
        for candidate in candidates {
            let d = distance(w, Array(candidate.lowercased()))
            let limit = max(1, min(3, candidate.count / 3))
            if d <= limit, best == nil || d < best!.1 { best = (candidate, d) }
        }
        return best?.0
    }

    static func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        for (i, ca) in a.enumerated() {
            var current = [i + 1]
            for (j, cb) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (ca == cb ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}

extension String {
    func replacingPrefix(_ prefix: String) -> String {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : self
    }
}
