import Testing
import TuppManifest
import TuppManifestLoader
import TuppSystem

/// The invalid-manifest corpus: every file states where tupp must point and what it
/// must say in its first lines (`# expect LINE:COL: text`).
struct InvalidCorpusTests {
    static let directory = String(#filePath.dropLast("InvalidCorpusTests.swift".count)) + "Invalid"

    /// The corpus's files. A directory that cannot be listed (moved, renamed) is not an
    /// empty corpus: it yields one case that fails naming the path.
    static var files: [String] {
        guard let names = try? Files.list(directory) else { return ["<cannot list \(directory)>"] }
        let yaml = names.filter { $0.hasSuffix(".yaml") }.sorted()
        return yaml.isEmpty ? ["<no .yaml files in \(directory)>"] : yaml
    }

    @Test func theCorpusIsWhereTheTestsLook() throws {
        let names = try Files.list(Self.directory).filter { $0.hasSuffix(".yaml") }
        #expect(!names.isEmpty, "no corpus in \(Self.directory)")
        #expect(Self.files == names.sorted(), "every file is a case")
    }

    @Test("each invalid manifest is rejected at the stated position", arguments: files)
    func rejected(_ name: String) throws {
        let path = "\(Self.directory)/\(name)"
        let text = try #require(try Files.readText(path))
        let header = try #require(text.split(separator: "\n").first, "missing # expect line")
        #expect(header.hasPrefix("# expect "))
        let expectation = header.dropFirst("# expect ".count)
        let position = expectation.prefix { $0 != " " }.dropLast()   // "12:5"
        let message = expectation.drop { $0 != " " }.dropFirst()
        let result = ManifestLoader.load([path])
        guard case .failure(let failure) = result else {
            Issue.record("\(name) was accepted")
            return
        }
        let rendered = failure.diagnostics.map { "\($0.mark.line):\($0.mark.column): \($0.message)" }
        #expect(failure.diagnostics.contains { "\($0.mark.line):\($0.mark.column)" == position && $0.message.contains(message) },
                "\(name): expected \(position): \(message), got \(rendered)")
        // Every diagnostic renders with its source line and a caret.
        for d in failure.diagnostics where d.mark.line > 0 {
            let text = d.rendered(source: failure.sources[d.file])
            #expect(text.hasPrefix("\(path):\(d.mark.line):\(d.mark.column): error: "))
        }
    }
}
