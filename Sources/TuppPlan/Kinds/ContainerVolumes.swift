import TuppManifest

// What a container's mounts mean for its data: which volumes it uses, and what a
// replacement keeps and discards. Pure.

extension ContainerKind {
    /// The mounts a container's recorded attributes describe (`mounts`, as `describe`
    /// wrote them): what the running container was started with.
    public static func recordedMounts(_ attributes: Attributes) -> [Mount] {
        guard case .list(let items)? = attributes[ContainerAttribute.mounts] else { return [] }
        return items.compactMap { $0.string.flatMap(parseMount) }
    }

    /// The inverse of `describe`: "tmpfs /tmp (size=64m)", "bind /srv → /data (ro)",
    /// "volume pgdata → /var/lib/db". nil for anything else.
    public static func parseMount(_ text: String) -> Mount? {
        guard let space = text.firstIndex(of: " "), let kind = Mount.Kind(rawValue: String(text[..<space])) else { return nil }
        var rest = Substring(text[text.index(after: space)...])
        var options: [String] = []
        if rest.hasSuffix(")"), let open = rest.ranges(of: " (").last {
            options = rest[open.upperBound..<rest.index(before: rest.endIndex)].split(separator: ",").map(String.init)
            rest = rest[..<open.lowerBound]
        }
        let readonly = options.contains("ro")
        if kind == .tmpfs {
            return rest.hasPrefix("/") ? Mount(kind: kind, target: String(rest), options: options, readonly: readonly) : nil
        }
        guard let arrow = rest.ranges(of: " → ").last, rest[arrow.upperBound...].hasPrefix("/") else { return nil }
        return Mount(kind: kind, source: String(rest[..<arrow.lowerBound]), target: String(rest[arrow.upperBound...]),
                     options: options, readonly: readonly)
    }

    /// The notes of a container's replacement: its writable snapshot is discarded — what
    /// was written outside its volumes and bind mounts is lost, what is in them is kept.
    /// The mounts are those it runs with (recorded), else the declared ones.
    static func replacementNotes(_ change: Plan.ResourceChange) -> [String] {
        let recorded = change.before.map(recordedMounts) ?? []
        let mounts = recorded.isEmpty ? change.spec(ContainerSpec.self)?.mounts ?? [] : recorded
        let keeping = mounts.filter { $0.kind != .tmpfs }
        guard !keeping.isEmpty else { return [snapshotNote(change.address)] }
        let targets = keeping.map(\.target)
        let outside = targets.count == 1 ? targets[0] : targets.dropLast().joined(separator: ", ") + " and " + targets.last!
        return [
            "the writable snapshot containers/\(change.address.name) is discarded: changes made inside the container outside \(outside) are lost",
            "kept: " + keeping.map { m in
                m.kind == .volume ? "volume \(m.source ?? "?") (at \(m.target))" : "bind mount \(m.source ?? "?") (at \(m.target))"
            }.joined(separator: ", "),
        ]
    }
}
