import TuppManifest
import TuppSystem

/// What start resolves from a ContainerConfig before it writes the spec: the user's
/// name to numbers (in the container's own /etc files), granted devices to the host's
/// nodes, the seccomp profile to a filter for this container's capabilities and this
/// host, every rlimit to a value, and the cgroup to directories.
struct ResolvedSettings: Equatable {
    var user: ResolvedUser
    var devices: [DeviceNode]
    var ulimits: [Ulimit]
    /// The limits `ulimits` of the config named; the others are tupp's defaults.
    var declaredUlimits: Set<Ulimit.Name>
    var seccomp: SeccompFilter?
    /// Where tupp-shim keeps the compiled filter (a file named after the filter's hash).
    var seccompCache: String?
    var cgroup: ContainerCgroup?

    /// Plain values for tests: root, no devices, the default rlimits, no filter, no cgroup.
    static func plain(threadsMax: UInt64 = 100_000) -> ResolvedSettings {
        ResolvedSettings(user: ResolvedUser(uid: 0, gid: 0, home: "/root"), devices: [],
                         ulimits: Ulimit.effective([], threadsMax: threadsMax), declaredUlimits: [], seccomp: nil, seccompCache: nil,
                         cgroup: nil)
    }
}

extension ContainerConfig {
    /// Reads what the settings need (the rootfs's /etc/passwd and /etc/group, the host's
    /// device nodes, threads-max) and resolves them. Compiled seccomp filters are cached
    /// in `cacheDirectory`.
    func resolve(cacheDirectory: String, host: SeccompHost = .current) throws(SystemError) -> ResolvedSettings {
        let resolvedUser: ResolvedUser
        do {
            resolvedUser = try (user ?? .root).resolve(inRoot: rootfs)
        } catch {
            throw SystemError(error.operation, "\(error.object) for container \(name)", errno: error.code, detail: error.detail)
        }
        var nodes: [DeviceNode] = []
        for grant in devices { nodes.append(try DeviceNode.host(grant)) }
        let filter = try seccomp == .default ? SeccompProfile.builtinFilter(capabilities: capabilities, host: host)
            : seccomp.profile?.resolve(capabilities: capabilities, host: host)
        return ResolvedSettings(
            user: resolvedUser, devices: nodes,
            ulimits: Ulimit.effective(ulimits, threadsMax: try Ulimit.threadsMax()),
            declaredUlimits: Set(ulimits.map(\.name)),
            seccomp: filter, seccompCache: filter.map { "\(cacheDirectory)/\($0.cacheName)" },
            cgroup: cgroup?.cgroup(for: name))
    }
}
