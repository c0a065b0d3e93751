using Adaptive.Operator.Reconciliation;
using Adaptive.Tests.Kubernetes;
using FsCheck;
using FsCheck.Fluent;

namespace Adaptive.Tests.Operator;

/// <summary>
/// For every name the API server takes for a pipeline (a DNS-1123 subdomain: up to 253 characters, dots,
/// leading digits), the names and labels the operator makes from it are valid for their kinds, and two
/// pipelines never share one.
/// </summary>
public sealed class NamesTests
{
    const string Middle = "abcdefghijklmnopqrstuvwxyz0123456789-";
    const string Ends = "abcdefghijklmnopqrstuvwxyz0123456789";

    /// <summary>A DNS-1123 label of 1 to 63 characters, leading digits and all.</summary>
    static Gen<string> Label(int most) =>
        from length in Gen.Choose(1, most)
        from first in Gen.Elements(Ends.ToCharArray())
        from middle in Gen.ArrayOf(Gen.Elements(Middle.ToCharArray()), Math.Max(0, length - 2))
        from last in Gen.Elements(Ends.ToCharArray())
        select length == 1 ? first.ToString() : first + new string(middle) + last;

    /// <summary>Short names mostly, and long ones near the 253-character limit often enough.</summary>
    static readonly Gen<string> Subdomain =
        from count in Gen.Frequency((3, Gen.Choose(1, 2)), (1, Gen.Choose(4, 6)))
        from labels in Gen.ArrayOf(Label(63), count)
        let joined = string.Join('.', labels)
        select joined.Length <= 253 ? joined : joined[..253].TrimEnd('.', '-');

    static readonly Arbitrary<(string, string, string, string)> Pipelines =
        Arb.From(from pipeline in Subdomain.Where(s => s.Length > 0 && char.IsAsciiLetterOrDigit(s[^1]))
                 from stage in Label(63)
                 from variant in Label(63)
                 from hardware in Label(63)
                 select (pipeline, stage, variant, hardware));

    [Fact]
    public void Every_name_made_from_a_valid_pipeline_is_valid_for_its_kind() =>
        Prop.ForAll(Pipelines, names =>
        {
            var (pipeline, stage, variant, hardware) = names;
            Assert.True(ObjectNames.IsSubdomain(pipeline), pipeline);
            foreach (var serviceName in new[] { Names.Allocation(pipeline, stage, variant, hardware), Names.RouterName(pipeline), Names.Dns(pipeline), Names.RoutesConfigMap(pipeline) })
                Assert.True(Names.Dns1035Label().IsMatch(serviceName) && serviceName.Length <= 63, $"'{serviceName}' from '{pipeline}' is no DNS-1035 label");
            string label = Names.LabelValue(pipeline);
            Assert.True(Names.LabelValuePattern().IsMatch(label) && label.Length <= 63, $"'{label}' from '{pipeline}' is no label value");
            Assert.True(ObjectNames.IsSubdomain(Names.Event(pipeline, DateTime.UtcNow)), Names.Event(pipeline, DateTime.UtcNow));
            // A name that is already valid is kept, so that what users see is their own name.
            if (pipeline.Length <= 63) Assert.Equal(pipeline, label);
            if (Names.Dns1035Label().IsMatch(pipeline)) Assert.Equal(pipeline, Names.Dns(pipeline));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));

    /// <summary>Cleaning and cutting lose characters; the hash of the original keeps pipelines that differ only there apart.</summary>
    [Theory]
    [InlineData("my.app", "my-app")]
    [InlineData("1-video", "x1-video")]
    [InlineData("1.video", "1-video")]
    public void Pipelines_that_clean_to_the_same_text_get_different_names(string one, string other) =>
        Assert.NotEqual(Names.Dns(one), Names.Dns(other));

    [Fact]
    public void Long_pipelines_that_share_a_prefix_get_different_names()
    {
        string head = new('p', 100);
        Assert.NotEqual(Names.Dns(head + "a"), Names.Dns(head + "b"));
        Assert.NotEqual(Names.LabelValue(head + "a"), Names.LabelValue(head + "b"));
        Assert.NotEqual(Names.Allocation(head, "s", "v", "a"), Names.Allocation(head, "s", "v", "b"));
    }
}
