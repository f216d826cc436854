import Glibc
import Testing
import TuppBase
import TuppSystem
import TuppTestSupport

/// contrib/gitops/tupp-sync following a bare repository the test makes, configured with
/// docs/fleet.md's sync.env, and the systemd units installed as the docs install them.
@Suite(.serialized) struct GitOpsTests {
    static var script: String { "\(Built.repository)contrib/gitops/tupp-sync" }

    func ready() throws -> Bool {
        try Host.require(.root, .btrfs, .command("/bin/busybox"), tool("/usr/bin/git"), tool("/usr/bin/ssh-keygen"))
    }

    /// A repository on this machine, a clone that commits to it, and SSH signing keys.
    struct Repository {
        let root: String
        var origin: String { "\(root)/origin.git" }
        var clone: String { "\(root)/clone" }
        var allowedKey: String { "\(root)/allowed" }
        var otherKey: String { "\(root)/other" }

        init(root: String, docs: DocExamples) throws {
            self.root = root
            try expectSuccess(Spawn.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", origin]))
            try expectSuccess(Spawn.run(["git", "init", "--quiet", "--initial-branch=main", clone]))
            for (key, value) in [("user.name", "Fleet Test"), ("user.email", "fleet@example.invalid")] {
                try expectSuccess(git(["config", key, value]))
            }
            for key in [allowedKey, otherKey] {
                try expectSuccess(Spawn.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-test", "-f", key]))
            }
            // The docs' way to sign, with the allowed key.
            let sign = try DocExamples.substitute(try docs("sign"), ["~/.ssh/id_ed25519.pub": "\(allowedKey).pub"])
            let configure = sign.split(separator: "\n").filter { $0.hasPrefix("git config ") }.joined(separator: "\n")
            try expectSuccess(shell(in: clone, configure))
        }

        func git(_ arguments: [String]) throws -> Output {
            try run(in: clone, ["git"] + arguments)
        }

        /// Writes `files`, commits (signed by `key`, or unsigned) and pushes; the commit id.
        @discardableResult
        func commit(_ message: String, _ files: [String: String], signedBy key: String?) throws -> String {
            for (path, text) in files {
                try Files.createDirectory(Paths.dirname("\(clone)/\(path)"))
                try Files.writeAtomically("\(clone)/\(path)", text: text, mode: 0o644)
            }
            try expectSuccess(git(["add", "--all"]))
            let signing = key.map { ["-c", "user.signingkey=\($0).pub", "commit", "-S"] } ?? ["-c", "commit.gpgsign=false", "commit"]
            try expectSuccess(git(signing + ["--quiet", "--allow-empty", "-m", message]))
            try expectSuccess(git(["push", "--quiet", origin, "HEAD:refs/heads/main"]))
            return try git(["rev-parse", "HEAD"]).stdout.trimmingCharacters()
        }
    }

    /// A host's manifest: containers `a` and `b`, b with `hostname`.
    static func manifest(_ i: Installation, hostnameOfB: String, extra: String = "") -> String {
        """
        version: 1
        storage:
          root: \(i.root.path)/pool
          device: { file: \(i.root.path)/pool.img, size: 256MiB }
        images:
          box: { busybox: /bin/busybox }
        networks:
          app: { bridge: \(i.bridge), subnet: \(i.subnet) }
        containers:
          a:
            image: box
            command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
            stopTimeout: 2s
            network: { attach: app }
          b:
            image: box
            command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
            stopTimeout: 2s
            hostname: \(hostnameOfB)
        \(extra)
        """
    }

    @Test func syncAppliesSignedCommitsOnlyAndOnlyTheirChanges() throws {
        guard try ready() else { return }
        let i = try Installation()
        let syncDir = "\(i.root.path)/sync"
        let manifestPath = "hosts/web/site.yaml"
        defer { destroy(i, manifests: ["\(syncDir)/repo/hosts/web"]) }
        let docs = try DocExamples("fleet.md")
        let repo = try Repository(root: i.root.path, docs: docs)

        // The docs' configuration, pointed at this test's repository, keys and installation.
        let allowedSigners = "\(i.root.path)/allowed_signers"
        let publicKey = try #require(try Files.readText("\(repo.allowedKey).pub")).trimmingCharacters()
        let signers = try docs("allowed_signers")
        let keyStart = try #require(signers.firstRange(of: "ssh-ed25519 "))
        try Files.writeAtomically(allowedSigners, text: String(signers[..<keyStart.lowerBound]) + publicKey + "\n", mode: 0o644)
        let config = "\(i.root.path)/sync.env"
        try Files.writeAtomically(config, text: try DocExamples.substitute(try docs("sync.env"), [
            "https://git.example.org/ops/site.git": repo.origin,
            "/etc/tupp/allowed_signers": allowedSigners,
        ]) + "TUPP_SYNC_DIR=\(syncDir)\nTUPP_STATE_DIR=\(i.state)\nTUPP_SYNC_TUPP=\(Built.tupp)\n", mode: 0o600)
        func sync() throws -> Output {
            try Spawn.run([Self.script], stderrToStdout: true, environment: ["TUPP_SYNC_CONFIG=\(config)"])
        }
        func applied() throws -> String? { try Files.readText("\(syncDir)/applied")?.trimmingCharacters() }
        func checkedOut() throws -> String { try run(in: "\(syncDir)/repo", ["git", "rev-parse", "HEAD"]).stdout.trimmingCharacters() }

        // A signed commit: applied, containers running.
        let first = try repo.commit("a and b", [manifestPath: Self.manifest(i, hostnameOfB: "b1")], signedBy: repo.allowedKey)
        var out = try sync()
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.contains("signature accepted"), "\(out)")
        #expect(try applied() == first)
        let a = try #require(try containerPID(i, "a"))
        let b = try #require(try containerPID(i, "b"))
        #expect(try hostname(ofPID: a) == "a")
        #expect(try hostname(ofPID: b) == "b1")

        // Nothing new: nothing applied.
        out = try sync()
        #expect(out.status == 0 && out.stdout.contains("no changes"), "\(out)")

        // A change to b only: b's hostname changes in place, a is not touched.
        let second = try repo.commit("b2", [manifestPath: Self.manifest(i, hostnameOfB: "b2")], signedBy: repo.allowedKey)
        out = try sync()
        #expect(out.status == 0, "\(out)")
        #expect(out.stdout.contains("container.b: updating"), "\(out)")
        #expect(!out.stdout.contains("container.a:"), "\(out)")
        #expect(out.stdout.contains("Apply complete! 1 change"), "\(out)")
        #expect(try applied() == second)
        #expect(try containerPID(i, "a") == a)
        #expect(try containerPID(i, "b") == b)
        #expect(try hostname(ofPID: b) == "b2")

        // A broken manifest, signed: refused with file and line, host unchanged.
        let brokenText = Self.manifest(i, hostnameOfB: "b3", extra: "    restrat: always")
        try repo.commit("broken", [manifestPath: brokenText], signedBy: repo.allowedKey)
        out = try sync()
        #expect(out.status != 0, "\(out)")
        let line = brokenText.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("restrat") }.map { $0 + 1 }
        #expect(out.stdout.contains("\(syncDir)/repo/\(manifestPath):\(line ?? 0):5: error: unknown key \"restrat\""), "\(out)")
        #expect(out.stdout.contains("nothing was applied"), "\(out)")
        #expect(try applied() == second)
        #expect(try containerPID(i, "a") == a && containerPID(i, "b") == b)
        #expect(try hostname(ofPID: b) == "b2")

        // The fix, unsigned: refused before it reaches the work tree.
        let fixed = [manifestPath: Self.manifest(i, hostnameOfB: "b3")]
        let unsigned = try repo.commit("fixed, unsigned", fixed, signedBy: nil)
        out = try sync()
        #expect(out.status != 0 && out.stdout.contains("is not signed by an allowed key"), "\(out)")
        #expect(try checkedOut() != unsigned)
        #expect(try hostname(ofPID: b) == "b2")

        // Signed by a key that is not allowed: refused too.
        try repo.commit("fixed, signed by a stranger", fixed, signedBy: repo.otherKey)
        out = try sync()
        #expect(out.status != 0 && out.stdout.contains("is not signed by an allowed key"), "\(out)")
        #expect(try hostname(ofPID: b) == "b2")
        #expect(try applied() == second)

        // Signed by the allowed key: applied.
        let last = try repo.commit("fixed, signed", fixed, signedBy: repo.allowedKey)
        out = try sync()
        #expect(out.status == 0, "\(out)")
        #expect(try applied() == last)
        #expect(try hostname(ofPID: b) == "b3")
        #expect(try containerPID(i, "a") == a)
    }

    @Test func configurationMistakesAreRefused() throws {
        let directory = try TemporaryDirectory("tupp-sync-config")
        defer { directory.remove() }
        func sync(_ config: String) throws -> Output {
            try Files.writeAtomically("\(directory.path)/sync.env", text: config, mode: 0o600)
            return try Spawn.run([Self.script], stderrToStdout: true, environment: [
                "TUPP_SYNC_CONFIG=\(directory.path)/sync.env", "TUPP_SYNC_DIR=\(directory.path)/sync", "TUPP_SYNC_TUPP=/bin/true"])
        }
        let misspelt = try sync("TUPP_SYNC_URL=\(directory.path)/none.git\nTUPP_SYNC_REQURE_SIGNED=1\n")
        #expect(misspelt.status == 1 && misspelt.stdout.contains("sync.env:2: unknown key TUPP_SYNC_REQURE_SIGNED"), "\(misspelt)")
        let noKeys = try sync("TUPP_SYNC_URL=\(directory.path)/none.git\nTUPP_SYNC_REQUIRE_SIGNED=1\n")
        #expect(noKeys.status == 1 && noKeys.stdout.contains("needs the allowed keys"), "\(noKeys)")
        let escape = try sync("TUPP_SYNC_URL=\(directory.path)/none.git\nTUPP_SYNC_PATH=../etc\n")
        #expect(escape.status == 1 && escape.stdout.contains("must be relative to the repository"), "\(escape)")
        let noURL = try sync("# nothing\n")
        #expect(noURL.status == 1 && noURL.stdout.contains("TUPP_SYNC_URL is not set"), "\(noURL)")
        #expect(!Files.exists("\(directory.path)/sync"), "refused before touching anything")
    }

    /// The docs' install commands, run in a private mount namespace whose /etc and
    /// /usr/local are overlays on a temporary directory: the units land where a host has
    /// them and `systemd-analyze verify` (the docs' last line) checks them as installed.
    @Test func unitsInstalledAsDocumentedPassVerify() throws {
        guard try Host.require(.root, tool("/usr/bin/systemd-analyze"), tool("/usr/bin/unshare")) else { return }
        let directory = try TemporaryDirectory("tupp-sync-units")
        defer { directory.remove() }
        let docs = try DocExamples("fleet.md")
        let work = "\(directory.path)/work"
        try Files.createDirectory(work)
        try Files.writeAtomically("\(work)/sync.env", text: try docs("sync.env"), mode: 0o600)
        try Files.writeAtomically("\(work)/allowed_signers", text: try docs("allowed_signers"), mode: 0o644)
        #expect(symlink("\(Built.repository)contrib", "\(work)/contrib") == 0)
        var overlays = ""
        for (n, target) in ["/etc", "/usr/local"].enumerated() {
            for sub in ["upper\(n)", "scratch\(n)"] { try Files.createDirectory("\(directory.path)/\(sub)") }
            overlays += "mount -t overlay overlay -o lowerdir=\(target),upperdir=\(directory.path)/upper\(n),workdir=\(directory.path)/scratch\(n) \(target)\n"
        }
        let script = overlays + "cd \(work)\n" + (try docs("install"))
        let hostPaths = ["/etc/systemd/system/tupp-sync.service", "/etc/systemd/system/tupp-sync.timer", "/etc/tupp/sync.env",
                         "/usr/local/bin/tupp-sync"]
        let before = hostPaths.map { try? Files.read($0) }
        let out = try Spawn.run(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", script], stderrToStdout: true)
        // verify prints nothing for units it accepts; a warning (an unknown key, say) fails.
        #expect(out.status == 0 && out.stdout.isEmpty, "\(out)")
        #expect(Files.exists("\(directory.path)/upper0/systemd/system/tupp-sync.timer"))
        #expect(Files.exists("\(directory.path)/upper0/tupp/sync.env"))
        #expect(Files.exists("\(directory.path)/upper1/bin/tupp-sync"))
        #expect(hostPaths.map { try? Files.read($0) } == before, "the install reached the host's own /etc or /usr/local")
    }

    @Test func scriptPassesShellcheck() throws {
        guard try Host.require(tool("/usr/bin/shellcheck")) else { return }
        let out = try Spawn.run(["/usr/bin/shellcheck", Self.script], stderrToStdout: true)
        #expect(out.status == 0, "\(out)")
    }
}

func expectSuccess(_ output: Output, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(output.status == 0, "\(output)", sourceLocation: sourceLocation)
}
