// The pure judgement between what is declared and what the pool shows: unit-tested
// without a pool (VolumeUnitTests).

/// One attribute of a volume that differs from its settings; each is changed in place.
public enum VolumeDifference: Sendable, Equatable {
    case owner(observed: VolumeOwner, declared: VolumeOwner)
    case mode(observed: UInt32, declared: UInt32)
    /// `observed` is the qgroup's limit (nil: none, or quotas off).
    case size(observed: UInt64?, declared: UInt64?)
}

extension VolumeSettings {
    /// What differs between these settings and the volume as observed. Size is compared
    /// whenever quotas are on (an undeclared size means no limit, so a limit set by hand is
    /// removed); with quotas off only a declared size differs, and applying it turns them on.
    public func differences(from facts: VolumeFacts, quotas: QuotaStatus) -> [VolumeDifference] {
        var result: [VolumeDifference] = []
        if let owner, owner != facts.owner { result.append(.owner(observed: facts.owner, declared: owner)) }
        if let mode, mode != facts.mode { result.append(.mode(observed: facts.mode, declared: mode)) }
        let limit = quotas.enabled ? facts.usage?.limit : nil
        if size != limit, quotas.enabled || size != nil {
            result.append(.size(observed: limit, declared: size))
        }
        return result
    }
}

/// Whether the pool should keep quotas on: only while some volume declares a size (qgroups
/// slow every write, snapshot and delete). Quotas tupp did not turn on — on a pool whose
/// filesystem is not tupp's (`storage` without a device) — are left alone.
public enum QuotaPolicy {
    public enum Action: Sendable, Equatable { case enable, disable }

    public static func action(declaredSizes: [UInt64?], status: QuotaStatus, poolFilesystemIsTupps: Bool) -> Action? {
        let wanted = declaredSizes.contains { $0 != nil }
        if wanted && !status.enabled { return .enable }
        if !wanted && status.enabled && poolFilesystemIsTupps { return .disable }
        return nil
    }
}
