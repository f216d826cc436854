import TuppManifest
import TuppManifestLoader

enum ManifestLoaderTestSupport {
    static func load(_ text: String, file: String = "/tmp/test/tupperware.yaml") -> Result<LoadedManifest, ManifestLoader.Failure> {
        ManifestLoader.load(files: [(file, Array(text.utf8))])
    }
}
