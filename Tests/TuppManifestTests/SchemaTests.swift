import Foundation
import Testing
import TuppTestSupport

/// The JSON Schema, checked by a real validator (python jsonschema + ruamel.yaml, as
/// installed by .ci/run): valid examples pass, the invalid corpus is rejected.
struct SchemaTests {
    static let root = String(#filePath.dropLast("Tests/TuppManifestTests/SchemaTests.swift".count))

    /// docs/manifest.md documents every field of the schema, and nothing else.
    @Test func theReferenceDocumentsExactlyTheSchema() throws {
        guard try Host.require(.command("/usr/bin/python3")) else { return }
        let result = try Spawn.run(["/usr/bin/python3", Self.root + "Tests/schema/docs.py"], stderrToStdout: true)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains(" 0 differences"), "\(result.output)")
    }

    @Test func schemaAgreesWithTupp() throws {
        guard try Host.require(.command("/usr/bin/python3")) else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [Self.root + "Tests/schema/check.py"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if output.contains("No module named") && !Host.isCI { return }   // validator not installed locally
        #expect(process.terminationStatus == 0, "\(output)")
        #expect(output.contains("0 failures"), "\(output)")
    }
}
