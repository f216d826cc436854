import Crypto
import TuppBase
import TuppManifestLoader
import TuppPlan
import TuppSystem

/// A plan saved for review (`tupp plan --out FILE`) and applied later (`tupp apply FILE`).
///
/// It pins what the reviewer saw: the manifest files' digest, tupp's version, a
/// fingerprint of every observed object and the action planned for each resource. Apply
/// re-observes and refuses the plan when any of these moved, naming what changed.
public struct SavedPlan: Sendable, Equatable {
    /// Marks the file as a tupp plan; also its format version.
    public static let formatVersion: Int64 = 1

    public var tuppVersion: String
    public var created: Double
    public var stateDirectory: String
    public var manifests: [String]
    public var manifestDigest: String
    public var prune: Bool
    public var destroy: Bool
    public var includeStorage: Bool
    public var pruneVolumes: Bool
    public var includeVolumes: Bool
    /// Made with `--refresh=false`: applied without asking registries either.
    public var refresh: Bool
    /// The project planned for (nil in plans of a tupp without projects).
    public var project: String?
    public var fingerprints: [String: String]
    public var actions: [String: String]

    public init(_ run: PlannedRun, loaded: LoadedManifest, stateDirectory: String, version: String) {
        tuppVersion = version
        created = wallClockSeconds()
        self.stateDirectory = Paths.canonical(stateDirectory) ?? stateDirectory
        manifests = loaded.files.map { Paths.canonical($0.path) ?? $0.path }
        manifestDigest = Self.digest(loaded)
        prune = run.options.prune
        destroy = run.options.destroy
        includeStorage = run.options.includeStorage
        pruneVolumes = run.options.pruneVolumes
        includeVolumes = run.options.includeVolumes
        refresh = run.options.refresh
        project = run.options.project
        fingerprints = Dictionary(uniqueKeysWithValues: run.observation.fingerprints.map { ($0.key.description, $0.value) })
        actions = Dictionary(uniqueKeysWithValues: run.plan.actionable.map { ($0.address.description, $0.action.rawValue) })
    }

    public var options: PlanOptions {
        PlanOptions(prune: prune, destroy: destroy, includeStorage: includeStorage, project: project, pruneVolumes: pruneVolumes,
                    includeVolumes: includeVolumes, refresh: refresh)
    }

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

    /// The file: these fields, plus `plan` — the plan as `tupp plan --json` prints it.
    public func render(plan: JSON.Node) -> [UInt8] {
        func strings(_ map: [String: String]) -> JSON.Node { .object(map.keys.sorted().map { ($0, .string(map[$0]!)) }) }
        let node = JSON.object([
            ("actions", strings(actions)),
            ("created", .double(created)),
            ("destroy", .bool(destroy)),
            ("fingerprints", strings(fingerprints)),
            ("include_storage", .bool(includeStorage)),
            ("include_volumes", .bool(includeVolumes)),
            ("manifest_digest", .string(manifestDigest)),
            ("manifests", .array(manifests.map { .string($0) })),
            ("plan", plan),
            ("project", project.map(JSON.Node.string) ?? .null),
            ("prune", .bool(prune)),
            ("prune_volumes", .bool(pruneVolumes)),
            ("refresh", .bool(refresh)),
            ("state_dir", .string(stateDirectory)),
            ("tupp_saved_plan", .int(Self.formatVersion)),
            ("tupp_version", .string(tuppVersion)),
        ])
        return Array((node.serialized() + "\n").utf8)
    }

    /// Writes the file atomically.
    public func write(to path: String, plan: JSON.Node) throws {
        try Files.writeAtomically(path, render(plan: plan), mode: 0o644)
    }

    /// The saved plan at `path`; nil when the file is not one (a manifest, a directory).
    public static func read(_ path: String) -> SavedPlan? {
        guard let bytes = try? Files.read(path, limit: 64 << 20) else { return nil }
        return parse(bytes)
    }

    /// nil when `bytes` is not a saved plan (a manifest, say).
    public static func parse(_ bytes: [UInt8]) -> SavedPlan? {
        guard bytes.first(where: { $0 != 32 && $0 != 10 && $0 != 9 }) == UInt8(ascii: "{"),
              let json = try? JSON.parse(bytes), json["tupp_saved_plan"]?.int == formatVersion else { return nil }
        func strings(_ key: String) -> [String: String]? {
            guard case .object(let pairs)? = json[key] else { return nil }
            var out: [String: String] = [:]
            for (k, v) in pairs {
                guard let s = v.string else { return nil }
                out[k] = s
            }
            return out
        }
        guard let version = json["tupp_version"]?.string, let state = json["state_dir"]?.string,
              case .array(let files)? = json["manifests"], let digest = json["manifest_digest"]?.string,
              let fingerprints = strings("fingerprints"), let actions = strings("actions") else { return nil }
        let manifests = files.compactMap(\.string)
        guard manifests.count == files.count else { return nil }
        return SavedPlan(tuppVersion: version, created: json["created"]?.double ?? 0, stateDirectory: state,
                         manifests: manifests, manifestDigest: digest, prune: json["prune"]?.bool ?? true,
                         destroy: json["destroy"]?.bool ?? false, includeStorage: json["include_storage"]?.bool ?? false,
                         pruneVolumes: json["prune_volumes"]?.bool ?? false, includeVolumes: json["include_volumes"]?.bool ?? false,
                         refresh: json["refresh"]?.bool ?? true, project: json["project"]?.string, fingerprints: fingerprints,
                         actions: actions)
    }

    init(tuppVersion: String, created: Double, stateDirectory: String, manifests: [String], manifestDigest: String,
         prune: Bool, destroy: Bool, includeStorage: Bool, pruneVolumes: Bool = false, includeVolumes: Bool = false,
         refresh: Bool = true, project: String?, fingerprints: [String: String], actions: [String: String]) {
        self.pruneVolumes = pruneVolumes
        self.includeVolumes = includeVolumes
        self.project = project
        self.refresh = refresh
        self.tuppVersion = tuppVersion
        self.created = created
        self.stateDirectory = stateDirectory
        self.manifests = manifests
        self.manifestDigest = manifestDigest
        self.prune = prune
        self.destroy = destroy
        self.includeStorage = includeStorage
        self.fingerprints = fingerprints
        self.actions = actions
    }

    /// Why this plan can no longer be applied as reviewed; empty when it still holds.
    public func staleness(now run: PlannedRun, loaded: LoadedManifest, stateDirectory: String, version: String) -> [String] {
        var reasons: [String] = []
        if version != tuppVersion { reasons.append("it was made by tupp \(tuppVersion); this is tupp \(version)") }
        let state = Paths.canonical(stateDirectory) ?? stateDirectory
        if state != self.stateDirectory { reasons.append("it was made for state directory \(self.stateDirectory), not \(state)") }
        if Self.digest(loaded) != manifestDigest { reasons.append("the manifest files changed since") }
        if run.options.project != project { reasons.append("it was made for project \(project ?? "none"), not \(run.options.project ?? "none")") }
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
