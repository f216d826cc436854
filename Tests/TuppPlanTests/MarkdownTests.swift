import Testing
import TuppManifest
import TuppPlan
import TuppRender

@Suite struct MarkdownTests {
    @Test func destroysAndReplacementsComeFirst() {
        let d = desired(sampleManifest(containers: 2))
        var o = matching(d)
        o.resources[ResourceAddress(.container, "c1")]!.attributes[ContainerAttribute.image] = .string("old")
        o.resources[ResourceAddress(.container, "gone")] = ObservedResource(ResourceAddress(.container, "gone"))
        let md = PlanMarkdown.render(Planner.plan(desired: d, observed: o))
        #expect(md.hasPrefix("### tupp plan\n\n**Plan:** 0 to add, 0 to change, 1 to replace, 1 to destroy.\n\n#### Destroyed or replaced\n\n"), "\(md)")
        #expect(md.contains("- 🗑️ destroy `container.gone` — not in manifest"))
        #expect(md.contains("- 🔁 replace `container.c1` — `image`"))
        #expect(md.contains("<details><summary>Full plan (2 resources)</summary>"))
        #expect(md.contains("```diff\n") && md.contains("! -/+ container \"c1\" {"), "\(md)")
    }

    @Test func staysUnderTheCommentLimitHoweverLargeThePlan() {
        var m = sampleManifest(containers: 0)
        m.networks["br0"]!.subnet = IPv4Network("10.0.0.0/16")!
        for i in 0..<3000 {
            m.containers["container-\(i)"] = Container(name: "container-\(i)", image: "box", network: .init(attach: "br0"),
                                                      command: ["/bin/sh", "-c", String(repeating: "x", count: 40)])
        }
        let plan = Planner.plan(desired: desired(m), observed: ObservedState())
        let md = PlanMarkdown.render(plan)
        #expect(md.count <= 65_000, "\(md.count) characters")
        #expect(md.contains("**Plan:** 3003 to add"))
        #expect(md.contains("more resources not shown (comment size limit)"))
        #expect(md.hasSuffix("</details>\n"))
    }

    @Test func noChanges() {
        let d = desired(sampleManifest())
        #expect(PlanMarkdown.render(Planner.plan(desired: d, observed: matching(d))) == "### tupp plan\n\n**No changes.** The host matches the manifest.\n\n")
    }
}
