import TuppBase
import TuppManifest

/// An error at a position in one file, before the file name is known.
public struct LocatedError: Error, Sendable {
    public var mark: Mark
    public var message: String

    public init(_ mark: Mark, _ message: String) {
        self.mark = mark
        self.message = message
    }
}

/// One problem found in a manifest, printed compiler-style:
///
///     manifests/web.yaml:12:14: error: unknown key "hostnme"; did you mean "hostname"?
///         hostnme: web
///         ^
public struct Diagnostic: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable { case error, warning }

    public var file: String
    public var mark: Mark
    public var severity: Severity
    public var message: String

    public init(file: String, mark: Mark, severity: Severity = .error, _ message: String) {
        self.file = file
        self.mark = mark
        self.severity = severity
        self.message = message
    }

    public var description: String { "\(file):\(mark.line):\(mark.column): \(severity.rawValue): \(message)" }

    /// The diagnostic followed by the offending source line and a caret under the column.
    public func rendered(source: [UInt8]?) -> String {
        var text = description
        guard let source, let line = Self.line(mark.line, of: source) else { return text }
        // Keep tabs so the caret lines up; cap very long lines.
        let shown = line.count > 200 ? String(line.prefix(200)) + "…" : line
        let pad = String(line.prefix(max(0, mark.column - 1)).map { $0 == "\t" ? "\t" : " " })
        text += "\n    \(shown)\n    \(pad)^"
        return text
    }

    static func line(_ number: Int, of source: [UInt8]) -> String? {
        var current = 1
        var start = 0
        for (i, byte) in source.enumerated() where byte == UInt8(ascii: "\n") {
            if current == number { return String(decoding: source[start..<i], as: UTF8.self) }
            current += 1
            start = i + 1
        }
        return current == number && start <= source.count ? String(decoding: source[start...], as: UTF8.self) : nil
    }
}
