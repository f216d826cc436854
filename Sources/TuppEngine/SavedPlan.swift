import Crypto
import FoundationEssentials
import TuppManifest
import TuppPlan
import TuppSystem

/// A plan saved for review (`tupp plan --out FILE`) and applied later (`tupp apply FILE`).
///
/// It pins what the reviewer saw: the manifest files' digest, tupp's version, a
/// fingerprint of every observed object and the action planned for each resource. Apply
/// re-observes and refuses the plan when any of these moved, naming what changed.
public struct SavedPlan: Codable, Sendable {
    /// Marks the file as a tupp plan; also its format version.
    public var tuppSavedPlan = 1
    public var tuppVersion: String
    public var created: Double
    public var stateDirectory: String
    public var manifests: [String]
    public var manifestDigest: String
    public var prune: Bool
    public var destroy: Bool
    public var includeStorage: Bool
    public var fingerprints: [String: String]
    public var actions: [String: String]

    enum CodingKeys: String, CodingKey {
        case tuppSavedPlan = "tupp_saved_plan", tuppVersion = "tupp_version", created
        case stateDirectory = "state_dir", manifests, manifestDigest = "manifest_digest"
        case prune, destroy, includeStorage = "include_storage", fingerprints, actions
    }

    public init(_ run: PlannedRun, loaded: LoadedManifest, stateDirectory: String, version: String) {
        tuppVersion = version
        created = wallClockSeconds()
        self.stateDirectory = Paths.canonical(stateDirectory) ?? stateDirectory
        manifests = loaded.files.map { Paths.canonical($0.path) ?? $0.path }
        manifestDigest = Self.digest(loaded)
        prune = run.options.prune
        destroy = run.options.destroy
        includeStorage = run.options.includeStorage
        fingerprints = Dictionary(uniqueKeysWithValues: run.observation.fingerprints.map { ($0.key.description, $0.value) })
        actions = Dictionary(uniqueKeysWithValues: run.plan.actionable.map { ($0.address.description, $0.action.rawValue) })
    }

    public var options: PlanOptions { PlanOptions(prune: prune, destroy: destroy, includeStorage: includeStorage) }

    /// SHA-256 over every manifest file's path and bytes, in order.
    public static func digest(_ loaded: LoadedManifest) -> String {
        var hasher = SHA256()
        for file in loaded.files {
            hasher.update(data: Array((Paths.canonical(file.path) ?? file.path).utf8) + [0])
            hasher.update(data: file.bytes)
            hasher.update(data: [0])
        }
        return hex(hasher.finalize())
    }

    /// "sha256:<hex>" of `bytes`.
    static func sha256(_ bytes: [UInt8]) -> String { hex(SHA256.hash(data: bytes)) }

    static func hex(_ digest: SHA256.Digest) -> String {
        "sha256:" + digest.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// The file: these fields, plus the plan as `tupp plan --json` prints it.
    public func render(_ plan: Plan) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var text = String(decoding: try encoder.encode(self), as: UTF8.self)
        text.removeLast()   // "}"
        text += ",\"plan\":" + PlanJSON.render(plan, tuppVersion: tuppVersion).serialized() + "}\n"
        return Array(text.utf8)
    }

    /// nil when `bytes` is not a saved plan (a manifest, say).
    public static func parse(_ bytes: [UInt8]) -> SavedPlan? {
        guard bytes.first(where: { $0 != 32 && $0 != 10 && $0 != 9 }) == UInt8(ascii: "{") else { return nil }
        return try? JSONDecoder().decode(SavedPlan.self, from: Data(bytes))
    }

    /// Why this plan can no longer be applied as reviewed; empty when it still holds.
    public func staleness(now run: PlannedRun, loaded: LoadedManifest, stateDirectory: String, version: String) -> [String] {
        var reasons: [String] = []
        if version != tuppVersion { reasons.append("it was made by tupp \(tuppVersion); this is tupp \(version)") }
        let state = Paths.canonical(stateDirectory) ?? stateDirectory
        if state != self.stateDirectory { reasons.append("it was made for state directory \(self.stateDirectory), not \(state)") }
        if Self.digest(loaded) != manifestDigest { reasons.append("the manifest files changed since") }
        let now = SavedPlan(run, loaded: loaded, stateDirectory: stateDirectory, version: version)
        for address in Set(fingerprints.keys).union(now.fingerprints.keys).sorted() where fingerprints[address] != now.fingerprints[address] {
            reasons.append("\(address) changed on the host: \(fingerprints[address] ?? "absent") → \(now.fingerprints[address] ?? "absent")")
        }
        for address in Set(actions.keys).union(now.actions.keys).sorted() where actions[address] != now.actions[address] {
            reasons.append("\(address) would now be \(now.actions[address] ?? "left as is"), not \(actions[address] ?? "left as is")")
        }
        return reasons
    }
}
