using Adaptive.Experiments.Live;

namespace Adaptive.Tests.Support;

/// <summary>A real Prometheus for a test, or a skip that says why there is none.</summary>
static class TestPrometheus
{
    public static Task<PrometheusServer> Start(params Uri[] targets)
    {
        if (PrometheusServer.Binary is null) Assert.Skip("prometheus is not installed; ./test.sh installs it (apt-get install prometheus)");
        return PrometheusServer.Start(targets);
    }
}
