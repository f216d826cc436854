import TuppBase
import TuppManifest

/// Checks that need the whole (merged) manifest: references, name rules, addresses,
/// overlaps. Reports every problem it finds, each at the token it is about.
struct Validator {
    var manifest: Manifest
    var diagnostics: [Diagnostic] = []

    init(_ manifest: Manifest) { self.manifest = manifest }

    mutating func error(_ path: String, _ message: String) {
        let location = manifest.sources.nearest(path) ?? SourceMap.Location(file: "<manifest>", mark: Mark(line: 1, column: 1))
        diagnostics.append(Diagnostic(file: location.file, mark: location.mark, message))
    }

    mutating func run() -> Manifest {
        checkStorage()
        checkNetworks()
        for name in manifest.containers.keys.sorted() { checkContainer(name) }
        checkAddresses()
        checkPorts()
        checkDependencies()
        return manifest
    }

    mutating func checkStorage() {
        guard let storage = manifest.storage else {
            if manifest.sources["storage"] == nil && (!manifest.images.isEmpty || !manifest.containers.isEmpty || !manifest.volumes.isEmpty) {
                let first = (manifest.images.keys.sorted().map { "images.\($0)" } + manifest.volumes.keys.sorted().map { "volumes.\($0)" }
                    + manifest.containers.keys.sorted().map { "containers.\($0)" }).first!
                error(first, "images, volumes and containers need a pool: add a `storage:` section with `root:` (and `device:` to back it with a loop file)")
            }
            return
        }
        if storage.root == "/" { error("storage", "storage.root cannot be /") }
        if let device = storage.device {
            if device.size < 128 << 20 {
                error("storage", "storage.device.size \(Units.formatSize(device.size)) is too small: btrfs needs at least 128MiB")
            }
            if device.file == storage.root || device.file.hasPrefix(storage.root + "/") {
                error("storage", "storage.device.file \(device.file) is inside storage.root; the mount would hide it")
            }
        }
    }

    mutating func checkNetworks() {
        var bridges: [String: String] = [:]
        let names = manifest.networks.keys.sorted()
        for name in names {
            let net = manifest.networks[name]!
            let p = "networks.\(name)"
            if let problem = Names.interfaceProblem(net.bridge) {
                error("\(p).bridge", "bridge name \"\(net.bridge)\" \(problem)")
            }
            if let other = bridges[net.bridge] {
                error("\(p).bridge", "bridge \"\(net.bridge)\" is already used by network \"\(other)\"")
            }
            bridges[net.bridge] = name
            if net.subnet.prefixLength > 30 || net.subnet.prefixLength < 8 {
                error("\(p).subnet", "subnet \(net.subnet) must have a prefix length between /8 and /30 (room for a gateway and containers)")
            }
            if manifest.sources["\(p).gateway"] != nil {
                if !net.subnet.contains(net.gateway) {
                    error("\(p).gateway", "gateway \(net.gateway) is not inside subnet \(net.subnet)")
                } else if net.gateway == net.subnet.network || net.gateway == net.subnet.broadcast {
                    error("\(p).gateway", "gateway \(net.gateway) is the \(net.gateway == net.subnet.network ? "network" : "broadcast") address of \(net.subnet)")
                }
            }
        }
        for (i, a) in names.enumerated() {
            for b in names[(i + 1)...] {
                let na = manifest.networks[a]!.subnet, nb = manifest.networks[b]!.subnet
                if na.overlaps(nb) {
                    error("networks.\(b).subnet", "subnet \(nb) of network \"\(b)\" overlaps \(na) of network \"\(a)\"")
                }
            }
        }
    }

    mutating func checkContainer(_ name: String) {
        var c = manifest.containers[name]!
        let p = "containers.\(name)"
        if manifest.images[c.image] == nil && manifest.sources["images.\(c.image)"] == nil {
            let known = manifest.images.keys.sorted()
            let hint = Suggest.closest(to: c.image, in: known).map { "; did you mean \"\($0)\"?" }
                ?? (known.isEmpty ? "; no images are declared" : "; declared: \(known.joined(separator: ", "))")
            error("\(p).image", "container \"\(name)\" uses image \"\(c.image)\", which is not declared\(hint)")
        }
        if !c.namespaces.contains(.mount) {
            error("\(p).namespaces", "the mount namespace is required: the container's root filesystem and /proc live in it")
        }
        if let hostname = c.hostname {
            if let problem = Names.hostnameProblem(hostname) {
                error("\(p).hostname", "hostname \"\(hostname)\" \(problem)")
            }
            if !c.namespaces.contains(.uts) {
                error("\(p).hostname", "hostname needs the uts namespace (add uts to namespaces), or the host's name would change")
            }
        }
        if !c.workdir.hasPrefix("/") {
            error("\(p).workdir", "workdir \"\(c.workdir)\" must be an absolute path")
        }
        let both = Set(c.capabilitiesAdd).intersection(c.capabilitiesDrop)
        for cap in both.sorted() {
            error("\(p).capabilities", "capability \(cap.name) is both added and dropped")
        }
        var targets: [String: Int] = [:]
        for (i, mount) in c.mounts.enumerated() {
            let mp = "\(p).mounts[\(i)].target"
            if !mount.target.hasPrefix("/") {
                error(mp, "mount target \"\(mount.target)\" must be an absolute path")
            } else if mount.target == "/" || DocumentDecoder.normalize(mount.target) == "/" {
                error(mp, "mount target cannot be / (the root is the container's snapshot)")
            } else if DocumentDecoder.normalize(mount.target) != mount.target {
                error(mp, "mount target \"\(mount.target)\" is not normalized; write \(DocumentDecoder.normalize(mount.target))")
            } else if let first = targets[mount.target] {
                error(mp, "mount target \(mount.target) is also used by mounts[\(first)]")
            }
            targets[mount.target] = targets[mount.target] ?? i
            if mount.kind == .volume, let volume = mount.source { checkVolumeMount(volume, at: "\(p).mounts[\(i)].source") }
        }
        if var attachment = c.network {
            let np = "\(p).network"
            if !c.namespaces.contains(.net) {
                error(np, "network needs the net namespace (add net to namespaces)")
            }
            if let problem = Names.interfaceProblem(attachment.interface) {
                error("\(np).interface", "interface name \"\(attachment.interface)\" \(problem)")
            } else if attachment.interface == "lo" {
                error("\(np).interface", "interface name \"lo\" is the container's loopback")
            }
            if let net = manifest.networks[attachment.attach] {
                if var address = attachment.address {
                    if address.prefixLength == -1 { address.prefixLength = net.subnet.prefixLength }
                    attachment.address = address
                    let ap = "\(np).address"
                    if address.prefixLength != net.subnet.prefixLength {
                        error(ap, "address \(address) has prefix /\(address.prefixLength) but network \"\(net.name)\" is \(net.subnet)")
                    } else if !net.subnet.contains(address.address) {
                        error(ap, "address \(address.address) is not inside subnet \(net.subnet) of network \"\(net.name)\"")
                    } else if address.address == net.subnet.network {
                        error(ap, "address \(address.address) is the network address of \(net.subnet)")
                    } else if address.address == net.subnet.broadcast {
                        error(ap, "address \(address.address) is the broadcast address of \(net.subnet)")
                    } else if address.address == net.gateway {
                        error(ap, "address \(address.address) is the gateway of network \"\(net.name)\"")
                    }
                }
                c.network = attachment
                manifest.containers[name] = c
            } else if manifest.sources["networks.\(attachment.attach)"] == nil {
                let known = manifest.networks.keys.sorted()
                let hint = Suggest.closest(to: attachment.attach, in: known).map { "; did you mean \"\($0)\"?" }
                    ?? (known.isEmpty ? "; no networks are declared" : "; declared: \(known.joined(separator: ", "))")
                error("\(np).attach", "network \"\(attachment.attach)\" is not declared\(hint)")
            }
        }
    }

    /// A volume mount names a declared volume (one that failed to decode was reported already).
    mutating func checkVolumeMount(_ volume: String, at path: String) {
        guard manifest.volumes[volume] == nil, manifest.sources["volumes.\(volume)"] == nil else { return }
        let known = manifest.volumes.keys.sorted()
        let hint = Suggest.closest(to: volume, in: known).map { "; did you mean \"\($0)\"?" }
            ?? (known.isEmpty ? "; no volumes are declared (add it under `volumes:`)" : "; declared: \(known.joined(separator: ", "))")
        error(path, "volume \"\(volume)\" is not declared\(hint)")
    }

    /// Duplicate explicit addresses, and whether every network has room for the
    /// containers whose address is allocated.
    mutating func checkAddresses() {
        var seen: [IPv4Address: String] = [:]
        var allocated: [String: Int] = [:]
        var explicit: [String: Int] = [:]
        for name in manifest.containers.keys.sorted() {
            guard let attachment = manifest.containers[name]!.network, manifest.networks[attachment.attach] != nil else { continue }
            if let address = attachment.address {
                if let other = seen[address.address] {
                    error("containers.\(name).network.address", "address \(address.address) is also used by container \"\(other)\"")
                }
                seen[address.address] = name
                explicit[attachment.attach, default: 0] += 1
            } else {
                allocated[attachment.attach, default: 0] += 1
            }
        }
        for (network, wanted) in allocated.sorted(by: { $0.key < $1.key }) {
            let net = manifest.networks[network]!
            let usable = Int(min(net.subnet.size, 1 << 24)) - 3 - explicit[network, default: 0]
            if wanted > usable {
                error("networks.\(network).subnet", "subnet \(net.subnet) has room for \(max(0, usable)) more addresses but \(wanted) containers need one allocated")
            }
        }
    }

    /// Two publications of one host port (the same protocol, overlapping addresses and
    /// ports) cannot both be forwarded.
    mutating func checkPorts() {
        var claimed: [(container: String, index: Int, port: PortPublication)] = []
        for name in manifest.containers.keys.sorted() {
            for (index, port) in (manifest.containers[name]!.network?.ports ?? []).enumerated() {
                if let earlier = claimed.first(where: { $0.port.overlaps(port) }) {
                    let other = manifest.sources["containers.\(earlier.container).network.ports[\(earlier.index)]"]
                    error("containers.\(name).network.ports[\(index)]",
                          "port \(port) overlaps \(earlier.port) of container \(earlier.container)\(other.map { " at \($0.file):\($0.mark)" } ?? ""); a host port is published once")
                }
                claimed.append((name, index, port))
            }
        }
    }
}

