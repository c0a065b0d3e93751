using Adaptive.Core.Routing;

namespace Adaptive.Tests.Routing;

public sealed class StageDeadlinesTests
{
    [Fact]
    public void A_stage_gets_what_is_left_of_the_slo_less_what_the_later_stages_have_been_taking()
    {
        var deadlines = new StageDeadlines(3);
        Assert.Equal(500, deadlines.TimeForMs(0, 500)); // nothing measured yet: nothing held back
        deadlines.Answered(1, 100);
        deadlines.Answered(2, 50);
        Assert.Equal(350, deadlines.TimeForMs(0, 500));
        Assert.Equal(450, deadlines.TimeForMs(1, 500));
        Assert.Equal(500, deadlines.TimeForMs(2, 500)); // the last stage has all that is left

        deadlines.Answered(2, 150); // a moving average: 50 + 0.1 × (150 − 50)
        Assert.Equal(500 - 100 - 60, deadlines.TimeForMs(0, 500), 9);
        Assert.Equal(60, deadlines.TimeForMs(0, 120)); // less is left than the later stages take: half is held back, no more
        Assert.Equal(0, deadlines.TimeForMs(0, -5));

        // A later stage that once took longer than the whole SLO (a cold start) does not starve the first.
        var cold = new StageDeadlines(2);
        cold.Answered(1, 2000);
        Assert.Equal(400, cold.TimeForMs(0, 800));
    }
}
