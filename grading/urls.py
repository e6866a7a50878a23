from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.i18n import set_language

from . import quality_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("rubric/", views.rubric, name="rubric"),
    path("review/", views.review_home, name="review"),
    path("review/next/", views.review_next, name="review-next"),
    path("review/mine/", views.my_scores, name="my-scores"),
    path("review/a/<str:public_id>/", views.review_assignment, name="review-assignment"),
    path("review/images/<str:public_id>/", views.review_image, name="review-image"),
    path("campaigns/<str:public_id>/review/", views.review_progress, name="review-progress"),
    path(
        "campaigns/<str:public_id>/review/exclusion/",
        views.review_exclusion,
        name="review-exclusion",
    ),
    path("campaigns/<str:public_id>/gold/", quality_views.gold_list, name="gold-list"),
    path("answers/<str:public_id>/gold/", quality_views.gold_mark, name="gold-mark"),
    path("campaigns/<str:public_id>/held/", views.held_items, name="held-items"),
    path("campaigns/<str:public_id>/export/", views.campaign_export, name="campaign-export"),
    path("exports/<str:public_id>/download/", views.export_download, name="export-download"),
    path("results/", views.results_overview, name="results"),
    path("results/items/", views.results_items, name="results-items"),
    path("results/bias-ranking/", views.analyses_overview, name="results-analyses"),
    path("results/<str:public_id>/", views.campaign_results, name="campaign-results"),
    path("results/<str:public_id>/judges/", views.campaign_judges, name="campaign-judges"),
    path(
        "results/<str:public_id>/judges/<str:judge>/disagreements/",
        views.judge_disagreements,
        name="judge-disagreements",
    ),
    path(
        "results/<str:public_id>/reviewers/",
        quality_views.reviewer_quality_page,
        name="reviewer-quality",
    ),
    path(
        "results/<str:public_id>/bias-ranking/",
        views.campaign_analyses,
        name="campaign-analyses",
    ),
    path(
        "results/<str:public_id>/visibility/",
        views.results_visibility,
        name="results-visibility",
    ),
    path("", include("inference.urls")),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/setlang/", login_not_required(set_language), name="set_language"),
    path("healthz", views.healthz, name="healthz"),
    path("operations/", views.operations, name="operations"),
    path("admin/", admin.site.urls),
]
