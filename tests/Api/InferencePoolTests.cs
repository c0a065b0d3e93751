using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using k8s.Models;

namespace Adaptive.Tests.Api;

/// <summary>An InferencePool's capacity: given, or what the matching, schedulable Nodes hold in whole replicas.</summary>
public sealed class InferencePoolTests
{
    static decimal Quantity(string text) => new ResourceQuantity(text).ToDecimal();

    static NodeCapacity Node(string name, string pool, decimal gpus, string cpu, bool schedulable = true) =>
        new(name, new Dictionary<string, string> { ["adaptive.dev/pool"] = pool },
            new Dictionary<string, decimal> { ["nvidia.com/gpu"] = gpus, ["cpu"] = Quantity(cpu) }, schedulable);

    static InferencePool Pool(int? replicas = null, Dictionary<string, string>? perReplica = null) => new()
    {
        Metadata = new ObjectMetadata { Name = "gpus" },
        Spec = new InferencePoolSpec
        {
            Replicas = replicas,
            NodeSelector = new Dictionary<string, string> { ["adaptive.dev/pool"] = "gpu" },
            ReplicaResources = perReplica ?? new Dictionary<string, string> { ["nvidia.com/gpu"] = "1", ["cpu"] = "2" },
        },
    };

    [Fact]
    public void Capacity_is_the_whole_replicas_the_matching_schedulable_nodes_hold()
    {
        NodeCapacity[] nodes =
        [
            Node("a", "gpu", 4, "8"),            // 4 GPUs, CPUs for 4: 4
            Node("b", "gpu", 2, "3500m"),        // 2 GPUs, CPUs for 1.75: 1
            Node("c", "gpu", 8, "64", schedulable: false), // cordoned: none
            Node("d", "cpu", 0, "64"),           // another pool: none
        ];
        Assert.Equal(5, PoolCapacity.Of(Pool(), nodes, Quantity));
        Assert.Equal(4, PoolCapacity.Of(Pool(), nodes.Where(n => n.Name != "b"), Quantity)); // a node leaves
        Assert.Equal(3, PoolCapacity.Of(Pool(replicas: 3), nodes, Quantity)); // given: the nodes do not matter
    }

    [Fact]
    public void Bad_pools_are_refused_naming_the_field()
    {
        PoolCapacity.Validate(Pool(), Quantity);
        Assert.Equal("spec.replicas", Assert.Throws<PlanningInputException>(() => PoolCapacity.Validate(Pool(replicas: -1), Quantity)).Field);
        var noResources = Pool(perReplica: []);
        Assert.Equal("spec.replicaResources", Assert.Throws<PlanningInputException>(() => PoolCapacity.Validate(noResources, Quantity)).Field);
        var zero = Pool(perReplica: new Dictionary<string, string> { ["nvidia.com/gpu"] = "0" });
        Assert.Equal("spec.replicaResources.nvidia.com/gpu", Assert.Throws<PlanningInputException>(() => PoolCapacity.Validate(zero, Quantity)).Field);
        var garbage = Pool(perReplica: new Dictionary<string, string> { ["cpu"] = "two" });
        Assert.Equal("spec.replicaResources.cpu", Assert.Throws<PlanningInputException>(() => PoolCapacity.Validate(garbage, Quantity)).Field);
    }
}
