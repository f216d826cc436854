import Glibc
import TuppFacts
import TuppManifest
import TuppSystem

/// DIR/spec, the container description tupp-shim reads (format documented at the top of
/// Sources/tupp-shim/spec.c): KEY \0 VALUE \0 pairs, nothing to quote or escape.
///
///     version 1, name, rootfs, hostname?, namespace*, arg+, env*, workdir, restart,
///     cap* (numbers), stop-timeout-ms, stop-signal, log-limit,
///     (health-arg+, health-interval-ms, health-timeout-ms, health-start-period-ms,
///     health-retries, health-on-unhealthy)?,
///     (mount bind|tmpfs, mount-source?, mount-target, mount-options, mount-readonly)*,
///     user-uid, user-gid, user-group*, user-home, cap-ambient*, readonly, shm-size,
///     device*, (rlimit | rlimit-default)*, (seccomp, seccomp-cache?, seccomp-arch*, seccomp-rule*)?,
///     (cgroup+, cgroup-kill, cgroup-oom?, cgroup-delegate?)?, (uid-map+, gid-map+)?
enum SpecFile {
    static func encode(_ config: ContainerConfig, _ resolved: ResolvedSettings) -> [UInt8] {
        var pairs: [(String, String)] = [("version", "1"), ("name", config.name), ("rootfs", config.rootfs)]
        if let hostname = config.hostname { pairs.append(("hostname", hostname)) }
        for namespace in config.namespaces.sorted() { pairs.append(("namespace", namespace.rawValue)) }
        for arg in config.command { pairs.append(("arg", arg)) }
        for key in config.env.keys.sorted() { pairs.append(("env", "\(key)=\(config.env[key]!)")) }
        pairs.append(("workdir", config.workdir))
        pairs.append(("restart", config.restart.rawValue))
        for capability in config.capabilities { pairs.append(("cap", String(capability.number))) }
        pairs.append(("stop-timeout-ms", String(Int((config.stopTimeout * 1000).rounded()))))
        pairs.append(("stop-signal", String(config.stopSignal)))
        pairs.append(("log-limit", String(config.logLimitBytes)))
        if let check = config.healthcheck {
            pairs += check.command.map { ("health-arg", $0) }
            func ms(_ seconds: Double) -> String { String(max(1, Int((seconds * 1000).rounded()))) }
            pairs += [("health-interval-ms", ms(check.interval)), ("health-timeout-ms", ms(check.timeout)),
                      ("health-start-period-ms", String(Int((check.startPeriod * 1000).rounded()))),
                      ("health-retries", String(check.retries)), ("health-on-unhealthy", config.onUnhealthy.rawValue)]
        }
        for mount in config.effectiveMounts {
            pairs.append(("mount", mount.kind.rawValue))
            if let source = mount.source { pairs.append(("mount-source", source)) }
            pairs.append(("mount-target", mount.target))
            pairs.append(("mount-options", mount.options.joined(separator: ",")))
            pairs.append(("mount-readonly", mount.readonly ? "1" : "0"))
        }
        let user = resolved.user
        pairs += [("user-uid", String(user.uid)), ("user-gid", String(user.gid))]
        pairs += user.groups.map { ("user-group", String($0)) }
        pairs.append(("user-home", user.home))
        pairs += config.ambientCapabilities.map { ("cap-ambient", String($0.number)) }
        pairs.append(("readonly", config.readOnly ? "1" : "0"))
        pairs.append(("shm-size", String(config.shmSize)))
        for node in resolved.devices {
            pairs.append(("device", "\(node.kind.rawValue) \(node.major) \(node.minor) \(String(node.mode, radix: 8)) \(node.uid) \(node.gid) \(node.path)"))
        }
        for limit in resolved.ulimits {
            pairs.append((resolved.declaredUlimits.contains(limit.name) ? "rlimit" : "rlimit-default", "\(limit.name.resource) \(limit.soft.map(String.init) ?? "unlimited") \(limit.hard.map(String.init) ?? "unlimited")"))
        }
        if let filter = resolved.seccomp {
            pairs.append(("seccomp", filter.defaultAction.description))
            if let cache = resolved.seccompCache { pairs.append(("seccomp-cache", cache)) }
            pairs += filter.architectures.map { ("seccomp-arch", $0) }
            pairs += filter.rules.map { ("seccomp-rule", $0.description) }
        }
        if let cgroup = resolved.cgroup {
            pairs += cgroup.directories.map { ("cgroup", $0) }
            if let kill = cgroup.killDirectory { pairs.append(("cgroup-kill", kill)) }
            if let oom = cgroup.oomFile { pairs.append(("cgroup-oom", oom)) }
            if config.delegateCgroup { pairs.append(("cgroup-delegate", "1")) }
        }
        if let mapping = config.userNamespace {
            pairs += mapping.uids.map { ("uid-map", $0.description) }
            pairs += mapping.gids.map { ("gid-map", $0.description) }
        }
        var bytes: [UInt8] = []
        for (key, value) in pairs {
            bytes += key.utf8
            bytes.append(0)
            bytes += value.utf8
            bytes.append(0)
        }
        return bytes
    }

    /// The pairs in order (for reading single fields back, e.g. the stop timeout).
    static func decode(_ bytes: [UInt8]) -> [(key: String, value: String)] {
        let strings = bytes.split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        var pairs: [(key: String, value: String)] = []
        var index = 0
        while index + 1 < strings.count {
            pairs.append((strings[index], strings[index + 1]))
            index += 2
        }
        return pairs
    }

    /// Atomic for readers (temp file + rename: the shim, which re-reads the spec at every
    /// exit, sees the old or the new one) but not fsynced: after a host crash no
    /// container described here is running, and the engine writes the spec again before
    /// the next start. Two fsyncs were most of start's latency (≈ 5 ms of ≈ 8 ms here).
    static func write(_ config: ContainerConfig, _ resolved: ResolvedSettings, directory: String) throws(SystemError) {
        let path = "\(directory)/spec", temp = "\(directory)/.spec.tmp.\(getpid())"
        let fd = try FileDescriptor.open(temp, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        do {
            try fd.writeAll(encode(config, resolved), describedAs: temp)
            try Errno.check("rename", "\(temp) → \(path)") { rename(temp, path) }
        } catch {
            unlink(temp)
            throw error
        }
    }

    /// The pairs of the spec in DIR whose key is one of `keys`, in order. Only those
    /// become strings: a spec holds hundreds of seccomp rules.
    static func read(_ keys: Set<String>, directory: String) -> [(key: String, value: String)]? {
        guard let bytes = try? Files.read("\(directory)/spec", limit: 1 << 20) else { return nil }
        let wanted = keys.map { Array($0.utf8) }
        var out: [(key: String, value: String)] = []
        var index = 0
        while index < bytes.count {
            guard let keyEnd = bytes[index...].firstIndex(of: 0), keyEnd + 1 <= bytes.count,
                  let valueEnd = bytes[(keyEnd + 1)...].firstIndex(of: 0) else { break }
            let key = bytes[index..<keyEnd]
            if wanted.contains(where: { $0.elementsEqual(key) }) {
                out.append((String(decoding: key, as: UTF8.self), String(decoding: bytes[(keyEnd + 1)..<valueEnd], as: UTF8.self)))
            }
            index = valueEnd + 1
        }
        return out
    }

    static func stopTimeout(directory: String) -> Double? {
        guard let ms = value("stop-timeout-ms", directory: directory).flatMap(Double.init) else { return nil }
        return ms / 1000
    }

    /// The container's cgroup as the spec in DIR names it; nil without a spec or cgroup.
    static func cgroup(directory: String) -> ContainerCgroup? {
        guard let pairs = read(["cgroup", "cgroup-kill", "cgroup-oom"], directory: directory) else { return nil }
        let directories = pairs.filter { $0.key == "cgroup" }.map(\.value)
        guard !directories.isEmpty else { return nil }
        return ContainerCgroup(directories: directories, killDirectory: pairs.last { $0.key == "cgroup-kill" }?.value,
                               oomFile: pairs.last { $0.key == "cgroup-oom" }?.value)
    }

    /// A single value of the spec in DIR ("rootfs", "user-uid").
    static func value(_ key: String, directory: String) -> String? {
        read([key], directory: directory)?.last?.value
    }
}
