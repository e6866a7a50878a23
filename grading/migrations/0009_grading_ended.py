from django.db import migrations, models
from django.utils import timezone


def end_grading_of_open_results(apps, schema_editor):  # type: ignore[no-untyped-def]
    """Campaigns whose results were already open had stopped taking scores: say so for good."""
    settings = apps.get_model("grading", "ReviewSettings")
    settings.objects.filter(results_open=True, grading_ended_at__isnull=True).update(
        grading_ended_at=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("grading", "0008_scores_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="reviewsettings",
            name="grading_ended_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="When this campaign stopped taking scores because its results were opened to reviewers. Permanent: hiding the results again does not re-open grading.",
                null=True,
            ),
        ),
        migrations.RunPython(end_grading_of_open_results, migrations.RunPython.noop),
    ]
