from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("grading", "0006_exports"),
    ]

    operations = [
        migrations.AddField(
            model_name="reviewsettings",
            name="results_open",
            field=models.BooleanField(
                default=False,
                help_text="Reviewers may read this campaign's comparison; it then takes no more scores.",
            ),
        ),
    ]
