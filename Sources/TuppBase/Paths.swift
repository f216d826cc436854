/// Path string helpers (no filesystem access).
public enum Paths {
    public static func dirname(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    public static func basename(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    public static func join(_ base: String, _ rest: String) -> String {
        if rest.hasPrefix("/") { return rest }
        return base.hasSuffix("/") ? base + rest : base + "/" + rest
    }

    /// Lexically normalized absolute path: no ".", "..", or repeated slashes.
    public static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { _ = parts.popLast(); continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }
}
