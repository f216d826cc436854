import Glibc
import Testing
import TuppSystem
import TuppTestSupport

/// contrib/systemd/tupp.service, installed as docs/manifest.md says ("Boot") in a private
/// mount namespace whose /etc and /usr/local are overlays on a temporary directory, then
/// checked by `systemd-analyze verify` (the docs' last line) as a host would have it.
@Suite struct BootUnitTests {
    @Test func theBootUnitInstalledAsDocumentedPassesVerify() throws {
        guard try Host.require(.root, .command("/usr/bin/systemd-analyze"), .command("/usr/bin/unshare")) else { return }
        let directory = try TemporaryDirectory("tupp-boot-unit")
        defer { directory.remove() }
        let docs = try DocExamples("manifest.md")
        let work = "\(directory.path)/work"
        try Files.createDirectory(work)
        #expect(symlink("\(Built.repository)contrib", "\(work)/contrib") == 0)
        var overlays = ""
        for (n, target) in ["/etc", "/usr/local"].enumerated() {
            for sub in ["upper\(n)", "scratch\(n)"] { try Files.createDirectory("\(directory.path)/\(sub)") }
            overlays += "mount -t overlay overlay -o lowerdir=\(target),upperdir=\(directory.path)/upper\(n),workdir=\(directory.path)/scratch\(n) \(target)\n"
        }
        // What scripts/up does first: tupp in /usr/local/bin (verify checks ExecStart's program).
        let installTupp = "install -d /usr/local/bin && install -m 0755 \(Built.tupp) /usr/local/bin/tupp\n"
        let script = overlays + installTupp + "cd \(work)\n" + (try docs("boot-install"))
        let hostPaths = ["/etc/systemd/system/tupp.service", "/usr/local/bin/tupp"]
        let before = hostPaths.map { try? Files.read($0) }
        let out = try Spawn.run(["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", script], stderrToStdout: true)
        // verify prints nothing for a unit it accepts; any warning fails.
        #expect(out.status == 0 && out.stdout.isEmpty, "\(out)")
        #expect(Files.exists("\(directory.path)/upper0/systemd/system/tupp.service"))
        #expect(hostPaths.map { try? Files.read($0) } == before, "the install reached the host's own /etc or /usr/local")
        let unit = try #require(try Files.readText("\(Built.repository)contrib/systemd/tupp.service"))
        #expect(unit.contains("ExecStart=/usr/local/bin/tupp apply --wait /etc/tupp/"))
        #expect(unit.contains("After=local-fs.target network-pre.target") && unit.contains("Restart=on-failure"))
        #expect(unit.contains("KillMode=process"), "the containers' supervisors outlive the unit's command")
    }
}
