import Glibc
import TuppBase
import TuppManifest

/// Manifest files read, merged and validated: one project's desired state.
public struct LoadedManifest: Sendable {
    public var manifest: Manifest
    /// The files read, in order, with their bytes (for diagnostics and digests).
    public var files: [(path: String, bytes: [UInt8])]
    /// The project these files form: `--project`, else the files' `project:` key, else
    /// the name of the directory the first manifest (or directory argument) lives in.
    public var project: String
}

/// Reads manifests from files and directories.
public enum ManifestLoader {
    public struct Failure: Error, Sendable {
        public var diagnostics: [Diagnostic]
        /// Source bytes by file, to print the offending lines.
        public var sources: [String: [UInt8]]

        /// Every diagnostic with its source line and caret.
        public func rendered() -> String {
            diagnostics.map { $0.rendered(source: sources[$0.file]) }.joined(separator: "\n")
        }
    }

    /// One project's manifests. `paths`: files, or directories meaning every *.yaml /
    /// *.yml in them (sorted, not recursive). Empty → ./tupperware.yaml. Files that name
    /// different projects are an error, unless `project` (--project) names the one they form.
    public static func load(_ paths: [String], project: String? = nil, limits: YAMLLimits = YAMLLimits()) -> Result<LoadedManifest, Failure> {
        switch loadProjects(paths, project: project, limits: limits) {
        case .failure(let failure): return .failure(failure)
        case .success(let projects) where projects.count == 1: return .success(projects[0])
        case .success(let projects):
            let list = projects.map { "\($0.project) (\($0.files.map(\.path).joined(separator: ", ")))" }.joined(separator: "; ")
            let first = projects[1].files[0].path
            return .failure(Failure(diagnostics: [Diagnostic(file: first, mark: Mark(line: 1, column: 1),
                "these manifests form \(projects.count) projects: \(list); plan and apply one project at a time, or give --project to make them one")],
                                    sources: [:]))
        }
    }

    /// Every project the manifests form, each merged and validated on its own (for
    /// `tupp validate` of a directory holding several projects).
    public static func loadProjects(_ paths: [String], project: String? = nil, limits: YAMLLimits = YAMLLimits()) -> Result<[LoadedManifest], Failure> {
        let arguments = paths.isEmpty ? ["tupperware.yaml"] : paths
        var files: [(String, [UInt8])] = []
        var diagnostics: [Diagnostic] = []
        for path in expand(arguments, diagnostics: &diagnostics) {
            switch readFile(path, limit: limits.maxBytes) {
            case .success(let bytes): files.append((path, bytes))
            case .failure(let d): diagnostics.append(d)
            }
        }
        var sources: [String: [UInt8]] = [:]
        for (path, bytes) in files { sources[path] = bytes }
        guard diagnostics.isEmpty else { return .failure(Failure(diagnostics: diagnostics, sources: sources)) }
        if files.isEmpty {
            return .failure(Failure(diagnostics: [Diagnostic(file: paths.first ?? ".", mark: Mark(line: 1, column: 1),
                                                             "no *.yaml or *.yml files found")], sources: [:]))
        }
        return loadProjects(files: files, project: project, defaultProject: defaultProject(for: arguments[0]), limits: limits)
    }

    /// Parses in-memory files (path used for messages and relative paths) as one project.
    public static func load(files: [(path: String, bytes: [UInt8])], project: String? = nil,
                            limits: YAMLLimits = YAMLLimits()) -> Result<LoadedManifest, Failure> {
        loadProjects(files: files, project: project, defaultProject: project ?? "default", limits: limits).map { $0[0] }
    }

    /// Parses the files and groups them by project; each group is merged and validated.
    static func loadProjects(files: [(path: String, bytes: [UInt8])], project override: String?, defaultProject: String,
                             limits: YAMLLimits) -> Result<[LoadedManifest], Failure> {
        var diagnostics: [Diagnostic] = []
        var sources: [String: [UInt8]] = [:]
        var parsed: [(path: String, bytes: [UInt8], documents: [(node: Node?, mark: Mark)])] = []
        for (path, bytes) in files {
            sources[path] = bytes
            do {
                let documents = try YAMLReader.documents(bytes, limits: limits)
                if documents.isEmpty || documents.allSatisfy({ $0.node == nil || $0.node!.isNullScalar }) && documents.count <= 1 {
                    diagnostics.append(Diagnostic(file: path, mark: Mark(line: 1, column: 1),
                                                  "empty manifest: it needs at least `version: 1`"))
                    continue
                }
                parsed.append((path, bytes, documents))
            } catch {
                diagnostics.append(Diagnostic(file: path, mark: error.mark, error.message))
            }
        }
        if let override, let problem = Names.projectProblem(override) {
            diagnostics.append(Diagnostic(file: files.first?.path ?? ".", mark: Mark(line: 1, column: 1),
                                          "--project \"\(override)\" \(problem)"))
        }
        // Group by the project each file names (the first document that names one), in
        // the order the projects first appear.
        var order: [String] = []
        var groups: [String: [(path: String, bytes: [UInt8], documents: [(node: Node?, mark: Mark)])]] = [:]
        for file in parsed {
            let named = file.documents.lazy.compactMap { $0.node?.scalarValue(forKey: "project") }.first
            let project = override ?? named ?? defaultProject
            if groups[project] == nil { order.append(project) }
            groups[project, default: []].append(file)
        }
        var loaded: [LoadedManifest] = []
        for project in order {
            var manifest = Manifest()
            for file in groups[project]! {
                var decoder = DocumentDecoder(file: file.path, baseDirectory: directory(of: file.path))
                for document in file.documents {
                    decoder.decode(document.node, into: &manifest, documentMark: document.mark)
                }
                diagnostics += decoder.diagnostics
            }
            // Whole-manifest checks run on whatever decoded cleanly, so one pass reports
            // everything; references to names that failed to decode are not reported twice.
            var validator = Validator(manifest)
            manifest = validator.run()
            diagnostics += validator.diagnostics
            manifest.project = project
            loaded.append(LoadedManifest(manifest: manifest, files: groups[project]!.map { ($0.path, $0.bytes) }, project: project))
        }
        guard diagnostics.isEmpty else {
            diagnostics.sort { ($0.file, $0.mark) < ($1.file, $1.mark) }
            return .failure(Failure(diagnostics: diagnostics, sources: sources))
        }
        return .success(loaded)
    }

    /// The project of manifests without a `project:` key: the directory the first
    /// argument is (a directory) or lives in (a file), as Compose names projects.
    static func defaultProject(for argument: String) -> String {
        var st = stat()
        let isDirectory = stat(argument, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
        let absolute = isDirectory ? (canonical(argument) ?? argument) : directory(of: argument)
        let name = absolute.split(separator: "/").last.map(String.init) ?? ""
        return Names.project(fromDirectory: name)
    }

    static func canonical(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func expand(_ paths: [String], diagnostics: inout [Diagnostic]) -> [String] {
        var out: [String] = []
        for path in paths {
            var st = stat()
            guard stat(path, &st) == 0 else {
                diagnostics.append(Diagnostic(file: path, mark: Mark(line: 1, column: 1),
                                              "cannot read manifest: \(String(cString: strerror(errno)))"))
                continue
            }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                let entries = listDirectory(path).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }
                out += entries.sorted().map { path.hasSuffix("/") ? path + $0 : path + "/" + $0 }
            } else {
                out.append(path)
            }
        }
        return out
    }

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if !name.hasPrefix(".") { names.append(name) }
        }
        return names
    }

    static func readFile(_ path: String, limit: Int) -> Result<[UInt8], Diagnostic> {
        let mark = Mark(line: 1, column: 1)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            return .failure(Diagnostic(file: path, mark: mark, "cannot read manifest: \(String(cString: strerror(errno)))"))
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0, st.st_size > limit {
            return .failure(Diagnostic(file: path, mark: mark, "file is \(st.st_size) bytes; manifests are limited to \(limit) bytes"))
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(Diagnostic(file: path, mark: mark, "cannot read manifest: \(String(cString: strerror(errno)))"))
            }
            if n == 0 { break }
            bytes += buffer[0..<n]
            if bytes.count > limit {
                return .failure(Diagnostic(file: path, mark: mark, "file is larger than \(limit) bytes; manifests are limited to \(limit) bytes"))
            }
        }
        return .success(bytes)
    }

    /// Absolute directory of a manifest path, for relative paths inside it.
    static func directory(of path: String) -> String {
        var absolute = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: 4096)
            if getcwd(&buffer, buffer.count) != nil {
                let cwd = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                absolute = cwd + "/" + path
            }
        }
        guard let slash = absolute.lastIndex(of: "/") else { return "/" }
        return slash == absolute.startIndex ? "/" : String(absolute[..<slash])
    }
}
