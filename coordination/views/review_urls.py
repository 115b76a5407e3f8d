"""URLs of review and audit: the review page, its report, re-verify, and trace import."""

from django.urls import path

from coordination.views import review

urlpatterns = [
    path("imports/new/", review.import_page, name="trace-import"),
    path("coordinations/<str:key>/review/", review.review_page, name="coordination-review"),
    path(
        "coordinations/<str:key>/review/report.html",
        review.review_report,
        name="coordination-review-report",
    ),
    path("coordinations/<str:key>/reverify/", review.reverify, name="coordination-reverify"),
]
