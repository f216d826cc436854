import Glibc
import Testing
@testable import TuppRegistry
import TuppSystem

@Suite("Registry credentials")
struct CredentialTests {
    func encoded(_ text: String) -> String { Base64.encode(Array(text.utf8)) }

    @Test func base64RoundTrips() {
        // RFC 4648's test vectors.
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
        #expect(Base64.decode("Zm9v!") == nil && Base64.decode("Zg=") == nil && Base64.decode("Z=g=") == nil)
    }

    @Test func dockerAndContainersKeys() throws {
        let file = #"""
        {"auths": {
          "https://index.docker.io/v1/": {"auth": "\#(encoded("hubuser:hubpass"))"},
          "registry.example.org:5000": {"auth": "\#(encoded("reg:s3cret:with:colons"))"},
          "registry.example.org:5000/team": {"auth": "\#(encoded("team:teampass"))"},
          "http://legacy.example/v2/": {"username": "u", "password": "p"}
        }, "credHelpers": {"ecr.example": "ecr-login"}}
        """#
        func lookup(_ reference: String) throws -> Credentials? {
            try CredentialStore.lookup(try ImageReference.parse(reference), in: Array(file.utf8), file: "/x/auth.json")
        }
        #expect(try lookup("nginx")?.username == "hubuser")
        #expect(try lookup("docker.io/team/app")?.password == "hubpass")
        let registry = try lookup("registry.example.org:5000/other/app:1")
        #expect(registry?.username == "reg" && registry?.password == "s3cret:with:colons")
        // The longest matching key wins.
        #expect(try lookup("registry.example.org:5000/team/app")?.username == "team")
        #expect(try lookup("registry.example.org:5000/teamwork/app")?.username == "reg")
        #expect(try lookup("legacy.example/app")?.password == "p")
        #expect(try lookup("ecr.example/app") == nil)
        #expect(try lookup("other.example/app") == nil)
    }

    @Test func secretsStayOutOfDescriptionsAndErrors() throws {
        let credentials = Credentials(username: "alice", password: "hunter2-secret", source: "/etc/tupp/auth.json (\"h\")")
        #expect(!"\(credentials)".contains("hunter2"))
        #expect(!String(reflecting: credentials).contains("hunter2"))
        #expect(!"\([credentials])".contains("hunter2"))
        // A file that is not JSON: the message names the file, never its content.
        let broken = Array(#"{"auths": {"h": {"auth": "hunter2-secret"#.utf8)
        let error = #expect(throws: SystemError.self) {
            try CredentialStore.lookup(try ImageReference.parse("h.io/a"), in: broken, file: "/etc/tupp/auth.json")
        }
        #expect(error.map { !"\($0)".contains("hunter2") } == true)
        let notBase64 = Array(#"{"auths": {"h.io": {"auth": "hunter2-secret"}}}"#.utf8)
        let second = #expect(throws: SystemError.self) {
            try CredentialStore.lookup(try ImageReference.parse("h.io/a"), in: notBase64, file: "/etc/tupp/auth.json")
        }
        #expect(second.map { !"\($0)".contains("hunter2") && "\($0)".contains("auth.json") } == true)
    }

    @Test func filesAreSearchedInOrder() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? Files.removeTree(directory) }
        try Files.writeAtomically("\(directory)/first.json", text: #"{"auths": {"other.io": {"auth": "\#(encoded("a:b"))"}}}"#)
        try Files.writeAtomically("\(directory)/second.json", text: #"{"auths": {"h.io": {"auth": "\#(encoded("c:d"))"}}}"#)
        let store = CredentialStore(files: ["\(directory)/missing.json", "\(directory)/first.json", "\(directory)/second.json"])
        #expect(try store.credentials(for: try ImageReference.parse("h.io/x"))?.username == "c")
        #expect(try store.credentials(for: try ImageReference.parse("other.io/x"))?.username == "a")
        #expect(try store.credentials(for: try ImageReference.parse("none.io/x")) == nil)
    }

    @Test func percentEncoding() {
        #expect(RegistryClient.percentEncode("repository:team/app:pull") == "repository%3Ateam%2Fapp%3Apull")
        #expect(RegistryClient.percentEncode("a-b_c.d~e") == "a-b_c.d~e")
    }

    @Test func registryErrorMessages() {
        let body = Array(#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#.utf8)
        #expect(RegistryClient.registryMessage(body) == "MANIFEST_UNKNOWN: manifest unknown")
        #expect(RegistryClient.registryMessage(Array("<html>".utf8)) == nil)
    }
}

func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/tupp-registry-test.XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw SystemError("create temporary directory", "/tmp") }
    return String(cString: made)
}
